"""Outbound delivery building blocks (issue 4): where to send, how, when to retry, and bounces.

Each module is pure and small so the delivery function and the submission gateway can be
assembled from them: `mx` (MX lookup), `transport_map` (which transport a domain uses),
`schedule` (retry times and how they fit SQS), `dsn` (RFC 3464 bounces), and `status`
(the SMTP-style status every failure carries).
"""
