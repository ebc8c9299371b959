"""Requests that start a turn take a place in the process's lane
(appliance/pacing.py) once their body has arrived, and give it back when the
run they made takes over or their answer begins. A client slow to send its
body holds no place while it sends. The routes say so with ``opt=STARTS_TURN``;
other requests (a state read, a list) are served at once.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

STARTS_TURN = {"starts_turn": True}


class TurnLaneMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope["app"].state, "runtime", None)
        starts_turn = scope["type"] == "http" and scope["route_handler"].opt.get("starts_turn")
        # No lane (width 0, the default): nothing to wait for, and no wrapper on each chunk sent.
        if not starts_turn or runtime is None or not runtime.lane.width:
            await self.app(scope, receive, send)
            return
        with runtime.lane.ticket() as ticket:

            async def receive_then_wait() -> Message:
                message = await receive()
                if message["type"] == "http.request" and not message.get("more_body", False):
                    await ticket.take()  # the whole body is here: the request's work begins
                return message

            async def send_then_leave(message: Message) -> None:
                if message["type"] == "http.response.start":
                    ticket.give_back()
                await send(message)

            await self.app(scope, receive_then_wait, send_then_leave)
