"""mailpipe's tools, never deployed: the `mailpipe` command (administration, dev) and the dev stack.

The gateway image (gateway/Dockerfile) leaves this package out, and with it moto and PyYAML.
"""
