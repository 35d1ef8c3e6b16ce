"""Driver name -> factory.  Imported only in the verifier child (drivers may pull in libraries).

Each factory takes the driver's validated settings and the verifier's thread pool (for blocking
or CPU-heavy work) and returns a :class:`saslauth.passdb.chain.PassDB`.  Imports are lazy so a
missing optional library only matters for the driver that needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from concurrent.futures import Executor

from saslauth.config import DriverSettings
from saslauth.passdb.chain import Chain, PassDB

# driver -> "module:Class"; the class is called as Class(settings, executor).
DRIVERS: dict[str, str] = {
    "passwd-file": "saslauth.passdb.passwd_file:PasswdFile",
    "shadow": "saslauth.passdb.shadow:Shadow",
    "pam": "saslauth.passdb.pam:Pam",
    "imap": "saslauth.passdb.imap:Imap",
    "sql": "saslauth.passdb.sql.driver:SqlPassDB",
    "ldap": "saslauth.passdb.ldap:Ldap",
}


def preload(passdbs: Sequence[DriverSettings]) -> None:
    """Import the configured drivers (and the schemes) while the installation is readable.

    The master calls this before forking a verifier that drops to ``verifier.user``: that user
    may not be able to read the Python installation (a virtualenv under /root, say).
    """
    import encodings.idna
    import encodings.latin_1  # noqa: F401

    import saslauth.schemes  # noqa: F401

    for settings in passdbs:
        importlib.import_module(DRIVERS[settings.driver].partition(":")[0])


def build(settings: DriverSettings, executor: Executor) -> PassDB:
    module_name, _, class_name = DRIVERS[settings.driver].partition(":")
    factory = getattr(importlib.import_module(module_name), class_name)
    driver: PassDB = factory(settings, executor)
    return driver


def build_chain(passdbs: Sequence[DriverSettings], executor: Executor) -> Chain:
    return Chain([build(settings, executor) for settings in passdbs])
