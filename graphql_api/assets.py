"""GraphiQL's files, served by this backend so that ``/graphql/`` works with no internet
and runs no third-party script from a CDN.

``ASSETS`` pins each file: the npm package and version it comes from, its path in the
package, and its SHA-384 digest, the same Subresource Integrity value Strawberry's own
GraphiQL page gives for the CDN copy (so the files are byte for byte what that page would
load). They live in ``graphql_api/static/graphiql/`` and are committed, with each
package's licence; nothing is built or fetched by ``make run``.

To change a version: edit ``ASSETS`` (new digests included: ``npm view PKG@VER dist``
gives the package's, a file's is ``openssl dgst -sha384 -binary FILE | base64``), then
``make graphiql-assets`` (``python -m graphql_api.assets``), which fetches the packages
with ``npm pack``, checks every digest and rewrites the directory and its
``VERSIONS.txt``. A test checks the committed files against ``ASSETS``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent / "static" / "graphiql"


@dataclass(frozen=True)
class Asset:
    name: str  # in DIRECTORY
    package: str
    version: str
    path: str  # in the package's tarball, below package/
    sha384: str  # base64, as in an integrity attribute


ASSETS = (
    Asset(
        "react.production.min.js",
        "react",
        "18.2.0",
        "umd/react.production.min.js",
        "tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
    ),
    Asset(
        "react-dom.production.min.js",
        "react-dom",
        "18.2.0",
        "umd/react-dom.production.min.js",
        "bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
    ),
    Asset(
        "graphiql.min.js",
        "graphiql",
        "3.8.3",
        "graphiql.min.js",
        "HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    Asset(
        "graphiql.min.css",
        "graphiql",
        "3.8.3",
        "graphiql.min.css",
        "Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
    Asset(
        "plugin-explorer.umd.js",
        "@graphiql/plugin-explorer",
        "1.0.2",
        "dist/index.umd.js",
        "2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
    ),
    Asset(
        "plugin-explorer.css",
        "@graphiql/plugin-explorer",
        "1.0.2",
        "dist/style.css",
        "5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
    ),
)


def sha384(data: bytes) -> str:
    return base64.b64encode(hashlib.sha384(data).digest()).decode()


def mismatches(directory: Path = DIRECTORY) -> list[str]:
    """The assets whose file is missing or differs from its pinned digest."""
    wrong = []
    for asset in ASSETS:
        path = directory / asset.name
        if not path.is_file() or sha384(path.read_bytes()) != asset.sha384:
            wrong.append(asset.name)
    return wrong


def vendor() -> None:
    """Fetch every package with ``npm pack``, check the digests, write DIRECTORY."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("make graphiql-assets needs npm (apt-get install npm)")
    packages = sorted({(a.package, a.version) for a in ASSETS})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files: dict[str, bytes] = {}
        versions = []
        for package, version in packages:
            packed = subprocess.run(  # noqa: S603 - npm, with the pinned names above
                [npm, "pack", "--silent", f"{package}@{version}"],
                cwd=work,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
            with tarfile.open(work / packed) as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}

                def read(
                    name: str,
                    tar: tarfile.TarFile = tar,
                    members: dict[str, tarfile.TarInfo] = members,
                ) -> bytes | None:
                    member = members.get(f"package/{name}")
                    extracted = tar.extractfile(member) if member is not None else None
                    return extracted.read() if extracted is not None else None

                for asset in (a for a in ASSETS if (a.package, a.version) == (package, version)):
                    data = read(asset.path)
                    if data is None or sha384(data) != asset.sha384:
                        sys.exit(f"{package}@{version}/{asset.path} is not the pinned file")
                    files[asset.name] = data
                manifest = json.loads(read("package.json") or b"{}")
                licence = read("LICENSE")
                slug = package.replace("@", "").replace("/", "-")
                if licence is not None:
                    files[f"LICENSE.{slug}.txt"] = licence
                versions.append(f"{package} {version} (licence: {manifest.get('license', '?')})")
        shutil.rmtree(DIRECTORY, ignore_errors=True)
        DIRECTORY.mkdir(parents=True)
        for name, data in files.items():
            (DIRECTORY / name).write_bytes(data)
        (DIRECTORY / "VERSIONS.txt").write_text(
            "GraphiQL's files, from these npm packages (graphql_api/assets.py):\n"
            + "".join(f"- {line}\n" for line in versions)
        )
    print(f"wrote {len(files)} files to {DIRECTORY}")


if __name__ == "__main__":
    vendor()
