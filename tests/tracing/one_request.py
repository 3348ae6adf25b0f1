"""Run one request through the whole stack in a fresh process, then print its answer as JSON.

Used by tests whose settings (middleware, exporter) are fixed at start-up:
    python tests/tracing/one_request.py PATH [TRACEPARENT]
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agency.settings")

import django

django.setup()

from django.test import Client  # noqa: E402
from opentelemetry import trace  # noqa: E402

path, traceparent = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
headers = {"HTTP_TRACEPARENT": traceparent} if traceparent else {}
response = Client().get(path, **headers)
trace.get_tracer_provider().force_flush()
print(json.dumps({"status": response.status_code, "headers": dict(response.headers)}))
