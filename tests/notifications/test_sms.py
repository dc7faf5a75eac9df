"""The SMS providers: Twilio over real HTTP against a loopback imitation of its Messages API,
and the development backend that only logs."""

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from twilio.http.http_client import TwilioHttpClient

from notifications.sms import LogSmsBackend, SmsError, TwilioSmsBackend, phone_number, sms_backend

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "token-for-tests"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
UNREACHABLE = "+15005550009"  # Twilio's magic test number for "cannot receive SMS"


class FakeTwilio(BaseHTTPRequestHandler):
    """Twilio's Messages endpoint as its documentation describes it: form-encoded POST with
    basic auth; 201 with the message, or an error body with Twilio's code and message."""

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        form = {
            key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()
        }
        self.server.received.append((self.path, self.headers["Authorization"], form))
        if urlsplit(self.path).path != MESSAGES_PATH:
            self._answer(404, {"code": 20404, "message": "The requested resource was not found"})
        elif form["To"] == UNREACHABLE:
            self._answer(
                400,
                {
                    "code": 21614,
                    "message": f"'To' number {UNREACHABLE} is not a valid mobile number",
                    "more_info": "https://www.twilio.com/docs/errors/21614",
                    "status": 400,
                },
            )
        elif form["To"] == "+15005550000":
            self._answer(503, {"code": 20503, "message": "Service is unavailable", "status": 503})
        else:
            self._answer(
                201,
                {
                    "sid": "SM" + "f" * 32,
                    "account_sid": ACCOUNT_SID,
                    "to": form["To"],
                    "from": form.get("From"),
                    "messaging_service_sid": form.get("MessagingServiceSid"),
                    "body": form["Body"],
                    "status": "queued",
                    "num_segments": "1",
                    "direction": "outbound-api",
                    "date_created": "Thu, 19 Nov 2026 00:00:00 +0000",
                    "uri": f"{MESSAGES_PATH[:-5]}/SM{'f' * 32}.json",
                },
            )

    def _answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class LoopbackHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, sending to the loopback server instead of api.twilio.com:
    the custom-client hook the SDK documents for proxies."""

    def __init__(self, base_url: str):
        super().__init__(timeout=5)
        self.base_url = base_url

    def request(self, method, url, *args, **kwargs):
        return super().request(
            method, url.replace("https://api.twilio.com", self.base_url), *args, **kwargs
        )


@pytest.fixture
def twilio_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilio)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def twilio_settings(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    return settings


def _twilio(server):
    host, port = server.server_address
    return TwilioSmsBackend(http_client=LoopbackHttpClient(f"http://{host}:{port}"))


class TestTwilio:
    def test_a_message_taken_returns_twilios_message_sid(self, twilio_server, twilio_settings):
        sid = _twilio(twilio_server).send("+8613800138000", "Top-up received.")
        assert sid == "SM" + "f" * 32
        [(path, authorization, form)] = twilio_server.received
        assert path == MESSAGES_PATH
        credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        assert authorization == f"Basic {credentials}"
        assert form == {"To": "+8613800138000", "From": "+15005550006", "Body": "Top-up received."}

    def test_a_messaging_service_sends_in_place_of_one_number(self, twilio_server, twilio_settings):
        twilio_settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
        _twilio(twilio_server).send("+8613800138000", "Hello")
        [(_, _, form)] = twilio_server.received
        assert form["MessagingServiceSid"] == "MG" + "1" * 32
        assert "From" not in form

    def test_a_refused_message_raises_with_twilios_reason_and_is_not_retried(
        self, twilio_server, twilio_settings
    ):
        with pytest.raises(SmsError) as refused:
            _twilio(twilio_server).send(UNREACHABLE, "Hello")
        reason = str(refused.value)
        assert reason.startswith("Twilio refused the message (400, code 21614): ")
        assert reason.endswith(f"'To' number {UNREACHABLE} is not a valid mobile number")
        assert refused.value.permanent

    def test_an_outage_raises_an_error_worth_retrying(self, twilio_server, twilio_settings):
        with pytest.raises(SmsError, match="503, code 20503") as outage:
            _twilio(twilio_server).send("+15005550000", "Hello")
        assert not outage.value.permanent

    def test_twilio_out_of_reach_raises_an_error_worth_retrying(self, twilio_settings):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        backend = TwilioSmsBackend(http_client=LoopbackHttpClient(f"http://127.0.0.1:{port}"))
        with pytest.raises(SmsError, match="could not be reached") as unreachable:
            backend.send("+8613800138000", "Hello")
        assert not unreachable.value.permanent

    def test_it_needs_credentials_and_a_sender(self, twilio_settings):
        twilio_settings.TWILIO_FROM_NUMBER = ""
        with pytest.raises(ImproperlyConfigured, match="TWILIO_FROM_NUMBER"):
            TwilioSmsBackend()
        twilio_settings.TWILIO_AUTH_TOKEN = ""
        with pytest.raises(ImproperlyConfigured, match="TWILIO_AUTH_TOKEN"):
            TwilioSmsBackend()

    def test_it_is_chosen_by_the_sms_backend_setting(self, twilio_settings):
        twilio_settings.SMS_BACKEND = "notifications.sms.TwilioSmsBackend"
        assert isinstance(sms_backend(), TwilioSmsBackend)


def test_development_sms_go_to_the_log(settings, caplog):
    settings.SMS_BACKEND = "notifications.sms.LogSmsBackend"
    backend = sms_backend()
    assert isinstance(backend, LogSmsBackend)
    with caplog.at_level("INFO", logger="notifications.sms"):
        message_id = backend.send("+8613800138000", "Balance low.")
    assert message_id.startswith("log-")
    assert f"SMS {message_id} to +8613800138000: Balance low." in caplog.text


def test_phone_numbers_are_sent_without_their_punctuation():
    assert phone_number("+86 (138) 0013-8000") == "+8613800138000"
