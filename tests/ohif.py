"""The OHIF viewer as a radiologist opens it: the built web app from the npm package ``@ohif/app``
(its ``dist/``), served by a small static server that passes ``/dicom-web/`` on to the test Orthanc's
DICOMweb, so the app and its data share one origin (Orthanc sends no CORS headers).

The package is fetched once from the npm registry into ``.cache/ohif/<version>`` (git-ignored) and
checked against the registry's SHA-512; the test command fetches it when it is missing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.services import free_port

OHIF_VERSION = "3.13.2"
PACKAGE = "@ohif/app"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "ohif"


def ohif_dist(version: str = OHIF_VERSION) -> Path:
    """The built app of ``@ohif/app`` at ``version``, fetched from the npm registry when missing."""
    dist = CACHE / version / "dist"
    if (dist / "index.html").is_file():
        return dist
    meta = httpx.get(f"https://registry.npmjs.org/{PACKAGE.replace('/', '%2f')}/{version}", timeout=60)
    meta.raise_for_status()
    published = meta.json()["dist"]
    tarball = httpx.get(published["tarball"], timeout=600, follow_redirects=True)
    tarball.raise_for_status()
    algorithm, digest = published["integrity"].split("-", 1)
    if base64.b64encode(hashlib.new(algorithm, tarball.content).digest()).decode() != digest:
        raise RuntimeError(f"{PACKAGE}@{version} does not match the registry's {algorithm}")
    staging = CACHE / f"{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(tarball.content), mode="r:gz") as archive:
        archive.extractall(staging, filter="data")
    shutil.rmtree(CACHE / version, ignore_errors=True)  # a copy left incomplete by an interrupted run
    (staging / "package").rename(CACHE / version)
    shutil.rmtree(staging, ignore_errors=True)
    return dist


def app_config(title: str) -> str:
    """OHIF's ``app-config.js``: one DICOMweb data source, the proxied Orthanc."""
    return f"""window.config = {{
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'orthanc',
  dataSources: [{{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'orthanc',
    configuration: {{
      friendlyName: '{title}',
      name: 'orthanc',
      wadoUriRoot: '/dicom-web',
      qidoRoot: '/dicom-web',
      wadoRoot: '/dicom-web',
      qidoSupportsIncludeField: false,
      supportsReject: false,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      omitQuotationForMultipartRequest: true,
      bulkDataURI: {{ enabled: true }},
    }},
  }}],
}};
"""


class OhifServer:
    """Serves the OHIF dist with our app-config.js; ``/dicom-web/`` goes to Orthanc's DICOMweb."""

    def __init__(self, dist: Path, orthanc_url: str) -> None:
        self.port = free_port()
        config = app_config("radrouter test PACS").encode()
        upstream = httpx.Client(base_url=orthanc_url, timeout=60)

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(dist), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reports
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("/dicom-web/"):
                    return self._proxy()
                if path == "/app-config.js":
                    return self._send(200, "application/javascript", config)
                if not (dist / path.lstrip("/")).is_file():
                    self.path = "/index.html"  # the app's own routes (/viewer, /segmentation, ...)
                return super().do_GET()

            def _proxy(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
                answer = upstream.get(self.path, headers=headers)
                self._send(answer.status_code, answer.headers.get("content-type", ""), answer.content)

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    print(ohif_dist())
