"""mailpipe core: the parts every function and gateway shares (store, directory, spool, MIME)."""
