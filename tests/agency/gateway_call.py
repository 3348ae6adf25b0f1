"""Call the model gateway once from a fresh process, then print what happened as JSON.

For tests that need a second OS process sharing the database (the breaker's row):
    python tests/agency/gateway_call.py ROUTE_NAME
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agency.settings")

import django

django.setup()

from agency.gateway import GatewayError, gateway_complete  # noqa: E402

try:
    completion = gateway_complete(purpose="work", route=sys.argv[1], messages=[{"role": "user", "content": "hi"}])
    print(json.dumps({"ok": True, "text": completion.text}))
except GatewayError as exc:
    print(json.dumps({"ok": False, "error": type(exc).__name__}))
