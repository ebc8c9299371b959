"""The landing page at ``/``: where to go next (the web chat comes later)."""

from __future__ import annotations

from litestar import Controller, MediaType, get

from appliance import __version__

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Offline AI appliance</title>
<style>
 body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem; color: #222; }}
 code, pre {{ background: #f3f3f3; border-radius: 4px; padding: .1rem .3rem; }}
 pre {{ padding: .8rem; overflow-x: auto; }}
</style></head>
<body>
<h1>Offline AI appliance <small>{version}</small></h1>
<p>This assistant runs entirely on your network. Nothing leaves this machine.</p>
<h2>Chat</h2>
<p>From a terminal on this machine (it reads the admin key saved at first start):</p>
<pre>appliance chat --url http://HOST:PORT</pre>
<p>or with any HTTP client, sending only the new message each turn:</p>
<pre>POST /threads                          → {{"thread_id": …}}
POST /threads/THREAD_ID/runs/stream    {{"assistant_id": "agent",
  "input": {{"messages": [{{"role": "user", "content": "Hello"}}]}},
  "stream_mode": ["messages-tuple"]}}</pre>
<p>Send your API key as <code>x-api-key</code> or <code>Authorization: Bearer</code>.</p>
<h2>More</h2>
<ul><li><a href="/docs">API documentation</a></li><li><a href="/readyz">Readiness</a></li></ul>
</body></html>"""


class HomeController(Controller):
    opt = {"exclude_from_auth": True}
    include_in_schema = False

    @get("/", media_type=MediaType.HTML)
    async def home(self) -> str:
        return PAGE.format(version=__version__)
