"""Signs a user in to Latchkey's /mcp with the official MCP Python SDK (PyPI `mcp`, pinned in
scripts/install-test-peers): `OAuthClientProvider` is given only the /mcp URL, discovers the
protected resource and the authorization server, registers (RFC 7591), and sends the user to
the authorization URL; a loopback HTTP server takes the redirect back.

Request on stdin as JSON: {"url", "client_name", "calls": [{"name", "arguments"}]}.
Prints JSON lines on stdout:
  {"authorize": URL}   when the user must open URL (the test drives a browser there);
  {"initialized", "tools", "results", "tokens", "client", "received"} at the end, or {"error"}.
`received` is every HTTP answer the client got (status, headers and body), for canary scans.
Exit 3 when the SDK is not installed."""

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

try:
    import httpx2 as httpx
    from mcp import ClientSession
    from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
except ImportError as e:  # pragma: no cover
    print(json.dumps({"error": f"not installed: {e}"}))
    sys.exit(3)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull):
        self.client = client_info


class Callback:
    """A loopback server for the redirect back (RFC 8252 §7.3)."""

    def __init__(self):
        self.result = None
        self.done = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                # Only the redirect back counts, and only the first: the browser also asks for
                # /favicon.ico once the page is shown, which must not overwrite the answer.
                if url.path != "/callback" or outer.done.is_set():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                q = parse_qs(url.query)
                outer.result = {k: v[0] for k, v in q.items()}
                body = b"<!DOCTYPE html><title>Signed in</title><p>Signed in: you can close this window."
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.done.set()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def wait(self):
        while not self.done.is_set():
            await asyncio.sleep(0.05)
        r = self.result
        if "error" in r:
            raise RuntimeError(f"authorization refused: {r}")
        return AuthorizationCodeResult(code=r["code"], state=r.get("state"), iss=r.get("iss"))


async def run(req):
    callback = Callback()
    storage = Memory()
    received = []

    async def keep(response):
        await response.aread()
        received.append(f"{response.status_code} {dict(response.headers)} {response.text}")

    async def redirect(url):
        emit({"authorize": url})

    provider = OAuthClientProvider(
        server_url=req["url"],
        client_metadata=OAuthClientMetadata(
            client_name=req.get("client_name", "SDK agent"),
            redirect_uris=[callback.url],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect,
        callback_handler=callback.wait,
    )
    async with httpx.AsyncClient(auth=provider, timeout=60, event_hooks={"response": [keep]}) as http:
        async with streamable_http_client(req["url"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                results = []
                for c in req.get("calls", []):
                    r = await session.call_tool(c["name"], c.get("arguments") or {})
                    results.append(r.model_dump(mode="json", by_alias=True, exclude_none=True))
    callback.server.shutdown()
    return {
        "initialized": init.model_dump(mode="json", by_alias=True, exclude_none=True),
        "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools.tools],
        "results": results,
        "tokens": storage.tokens.model_dump(mode="json", exclude_none=True) if storage.tokens else None,
        "client": storage.client.model_dump(mode="json", exclude_none=True) if storage.client else None,
        "received": received,
    }


def main():
    req = json.load(sys.stdin)
    try:
        out = asyncio.run(run(req))
    except BaseException as e:  # the SDK raises exception groups from its task group
        out = {"error": f"{type(e).__name__}: {e!r}"}
    emit(out)


main()
