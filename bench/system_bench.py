"""Logins per second through ``shadow`` and ``pam`` (pam_unix), 20 concurrent clients.

Root only: makes throwaway accounts and a PAM service (removed afterwards), starts the daemon
(verifier as root, failure_delay 0) and runs authbench against it::

    cc -O2 -o /tmp/authbench /work/shared/tools/authbench.c
    PYTHONPATH=src python3 bench/system_bench.py /tmp/authbench
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.ports import public_tmpdir
from tests.fixtures.saslauth import running
from tests.fixtures.sysusers import system_accounts


def bench(authbench: str, sock: Path, creds: Path, *extra: str) -> dict[str, object]:
    out = subprocess.run(
        [authbench, "-s", str(sock), "-f", str(creds), "-c", "20", "-t", "10", *extra],
        capture_output=True, text=True, check=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def main() -> None:
    authbench = sys.argv[1]
    with system_accounts() as make, public_tmpdir() as work:
        users = [make.add(f"b{i}") for i in range(4)]  # yescrypt, Debian's default
        sha = [make.add(f"s{i}", method="SHA512") for i in range(4)]
        service = make.pam_service("auth required pam_unix.so\naccount required pam_unix.so\n")
        config = work / "saslauth.yaml"
        config.write_text(
            f'user: nobody\nfailure_delay: 0\nlisten:\n  - path: {work / "auth"}\n'
            '    mode: "0666"\npassdb:\n  - driver: shadow\n    allowed_domains: [shadow.test]\n'
            f"  - driver: pam\n    service: {service}\n    allowed_domains: [pam.test]\n"
            "    threads: 8\n"
        )
        files = {}
        for kind in ("shadow", "pam"):
            files[kind] = work / f"{kind}.creds"
            files[kind].write_text("".join(f"{u.name}@{kind}.test:{u.password}\n" for u in users))
        files["shadow-sha512"] = work / "sha.creds"
        files["shadow-sha512"].write_text(
            "".join(f"{u.name}@shadow.test:{u.password}\n" for u in sha)
        )
        files["pam-bad"] = work / "bad.creds"
        files["pam-bad"].write_text("".join(f"{u.name}@pam.test:wrong\n" for u in users))
        with running(config, work / "auth") as daemon:
            for kind in ("shadow", "shadow-sha512", "pam"):
                print(kind, json.dumps(bench(authbench, daemon.socket, files[kind])))
            one = bench(authbench, daemon.socket, files["pam"], "-c", "1", "-t", "5")
            print("pam, 1 client", json.dumps(one))
            # Successful PAM logins while 8 clients keep failing ones (2 s each) in flight.
            bad = subprocess.Popen(
                [authbench, "-s", str(daemon.socket), "-f", str(files["pam-bad"]), "-c", "4",
                 "-t", "12"], stdout=subprocess.PIPE, text=True,
            )
            print("pam+failures", json.dumps(bench(authbench, daemon.socket, files["pam"])))
            print("failures", bad.communicate()[0].strip())


if __name__ == "__main__":
    main()
