"""saslauth: a SASL authentication daemon speaking the Dovecot auth protocol."""

__version__ = "0.1.0"
