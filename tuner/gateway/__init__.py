"""The test-time-scaling gateway: an OpenAI-compatible server that serves a preset.

Per request it samples the preset's N branches from one upstream streaming request, extracts
each finished branch's answer with the preset's task rule, applies the preset's vote rule
as branches finish, and answers at the latest at the deadline (counted from the request's
arrival), closing the upstream request so vLLM aborts the unfinished branches. The answer is
an ordinary OpenAI completion with a `latts` field holding the vote.

Above the tuner's core (it reads presets), beside the review wing; the CLI wires it.
"""

from tuner.gateway.admission import Admission
from tuner.gateway.app import create_app
from tuner.gateway.engine import EngineProcess, EngineStartFailed, free_port, start_engine
from tuner.gateway.errors import GatewayError
from tuner.gateway.server import RunningGateway, check_upstream, serve, start_in_thread
from tuner.gateway.settings import (
    API_KEY_VARIABLE,
    GatewaySettings,
    api_key_from_env,
    settings_from_preset,
)

__all__ = [
    "API_KEY_VARIABLE",
    "Admission",
    "EngineProcess",
    "EngineStartFailed",
    "GatewayError",
    "GatewaySettings",
    "RunningGateway",
    "api_key_from_env",
    "check_upstream",
    "create_app",
    "free_port",
    "serve",
    "settings_from_preset",
    "start_engine",
    "start_in_thread",
]
