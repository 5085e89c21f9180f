"""Drives Latchkey's /mcp with the official MCP Python SDK (PyPI `mcp`, pinned in
scripts/install-test-peers). Request on stdin as JSON: {"url", "token", "elicitation",
"calls": [{"name", "arguments"}]}; prints {"initialized", "tools", "results"} as
JSON, or {"error"}. With "elicitation": true the client declares elicitation (form and URL
mode, as the SDK does when given a callback); a call answered with a protocol error is
recorded as {"protocol_error": {"code", "message", "data"}} in its place in "results".
Exit 3 when the SDK is not installed."""

import asyncio
import json
import sys

try:
    import httpx2 as httpx
    from mcp import ClientSession, MCPError
    from mcp.client.streamable_http import streamable_http_client
except ImportError as e:  # pragma: no cover
    print(json.dumps({"error": f"not installed: {e}"}))
    sys.exit(3)


async def run(req):
    headers = {}
    if req.get("token"):
        headers["Authorization"] = f"Bearer {req['token']}"
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(req["url"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            kwargs = {}
            if req.get("elicitation"):
                # Never called here (Latchkey sends no elicitation/create): its presence is
                # what makes the SDK declare `elicitation: {form, url}`.
                async def elicit(ctx, params):  # pragma: no cover
                    raise RuntimeError("not expected")

                kwargs["elicitation_callback"] = elicit
            async with ClientSession(read, write, **kwargs) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                results = []
                for c in req.get("calls", []):
                    try:
                        r = await session.call_tool(c["name"], c.get("arguments") or {})
                        results.append(r.model_dump(mode="json", by_alias=True, exclude_none=True))
                    except MCPError as e:
                        results.append({"protocol_error": {"code": e.code, "message": e.message, "data": e.data}})
                return {
                    "initialized": init.model_dump(mode="json", by_alias=True, exclude_none=True),
                    "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools.tools],
                    "results": results,
                }


def main():
    req = json.load(sys.stdin)
    try:
        out = asyncio.run(run(req))
    except BaseException as e:  # the SDK raises exception groups from its task group
        out = {"error": f"{type(e).__name__}: {e!r}"}
    print(json.dumps(out))


main()
