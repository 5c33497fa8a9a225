"""The SMTP gateway: aiosmtpd owns the wire; our handler validates recipients and spools messages."""
