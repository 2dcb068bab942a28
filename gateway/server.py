"""Running a node: event loop, listening socket(s), TLS, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl

from aiohttp import web

from gateway import logs
from gateway.app import Node, build_state
from gateway.catalog import load_catalog
from gateway.config import NodeConfig
from gateway.filemodes import check_private
from gateway.governance.webhooks import load_node_key
from gateway.keyring import load_keyring
from gateway.protocol import make_server
from gateway.stores import open_store
from gateway.tomlfile import ConfigError


def load_state(config: NodeConfig):  # noqa: ANN201 - returns gateway.app.State
    """Load catalog and keyring named by the node configuration."""
    catalog = load_catalog(config.resolve(config.node.catalog))
    if catalog.instance != config.node.instance:
        raise ConfigError(config.source, "node.instance",
                          f"{config.node.instance!r} differs from the catalog's instance {catalog.instance!r}")
    keyring = load_keyring(check_private(config.resolve(config.node.keyring), "the keyring"))
    return build_state(catalog, keyring)


def ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    """TLS (and mutual TLS with ``client_ca``) when the node config asks for it."""
    n = config.node
    if not n.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = config.resolve(n.tls_cert), config.resolve(n.tls_key or "")
    for name, path in (("node.tls_cert", cert), ("node.tls_key", key)):
        if not path.is_file():
            raise ConfigError(config.source, name, f"file not found: {path}")
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(config.source, "node.tls_cert",
                          f"cannot load {cert} with key {key}: {exc}") from None
    if n.client_ca:
        ca = config.resolve(n.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(config.source, "node.client_ca", f"cannot load {ca}: {exc}") from None
    return ctx


def reload_tls(config: NodeConfig, ctx: ssl.SSLContext | None) -> None:
    """Load the configured certificate and key into the live context again (SIGHUP): new
    connections get the renewed certificate, open ones keep theirs. ConfigError when the
    files do not load (the old certificate stays)."""
    if ctx is None:
        return
    fresh = ssl_context(config)  # checks the files (and client_ca) first
    assert fresh is not None
    n = config.node
    ctx.load_cert_chain(str(config.resolve(n.tls_cert or "")), str(config.resolve(n.tls_key or "")))


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket; SO_REUSEPORT lets several worker processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def run_node(config: NodeConfig, sock: socket.socket | None = None, reload_path: str | None = None,
                   *, accept_reset: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; then stop accepting, finish in-flight work and close the store.
    ``accept_reset``: see :func:`gateway.stores.open_store`."""
    state = load_state(config)
    tls = ssl_context(config)
    if sock is None:  # bind before opening anything, so that a busy port leaves nothing open
        try:
            sock = bind_socket(config.host, config.port)
        except OSError as exc:
            raise ConfigError(config.source, "node.listen",
                              f"cannot listen on {config.node.listen}: {exc.strerror or exc}") from None
    store = open_store(config, accept_reset=accept_reset)
    node = Node(config, state, store)
    if config.limits.client_timeout_s is not None:
        node.log.event("config_deprecated", level="warning", key="limits.client_timeout_s",
                       detail="no longer used: a body must arrive within limits.body_timeout_s "
                              f"({config.limits.body_timeout_s:g} s)")
    await node.start()
    watcher = None
    if config.store.backend == "jetstream":  # cluster mode: catalog and keys from the KV bucket
        from gateway.kvwatch import ConfigWatcher
        from gateway.operatorkey import trusted_keys

        watcher = ConfigWatcher(node, store, trusted_keys(config))  # type: ignore[arg-type]
        watcher.start()
    server = make_server(node)
    runner = web.ServerRunner(server, handle_signals=False,
                              shutdown_timeout=config.limits.shutdown_timeout_s)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=tls,
                        shutdown_timeout=config.limits.shutdown_timeout_s)
    await site.start()
    host, port = sock.getsockname()[:2]
    scheme = "https" if config.node.tls_cert else "http"
    import fastpath

    node.log.event("listening", always=True, url=f"{scheme}://{host}:{port}", backend=config.store.backend,
                   resources=len(state.catalog.resources), fastpath=fastpath.IMPLEMENTATION)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    reloading: list[asyncio.Task[None]] = []

    async def reload_now() -> None:
        try:
            # Parse and compile off the event loop (a 16,000-resource catalog takes seconds):
            # requests go on being served with the old state until the swap.
            new = await asyncio.to_thread(load_state, config)
            node.citizen.check_keyring(new.keyring, config.node.keyring)
            await asyncio.to_thread(ssl_context, config)  # the TLS files load (checked off-loop)
            reload_tls(config, tls)  # new handshakes use the renewed certificate
            key_path = node.node_key.path  # after `node-key rotate`: read off-loop, swap here
            rotated = key_path is not None and node.node_key.adopt(
                await asyncio.to_thread(load_node_key, key_path))
            node.swap_state(new)
            node.log.event("reloaded", resources=len(node.state.catalog.resources),
                           tls=tls is not None, node_key=node.node_key.id, node_key_rotated=rotated)
        except ConfigError as exc:
            node.log.event("reload_refused", level="warning", error=str(exc))

    def reload() -> None:
        if reloading and not reloading[-1].done():
            reloading[-1].add_done_callback(lambda _t: reload())  # once the one running ends
            return
        reloading[:] = [loop.create_task(reload_now())]

    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    for task in reloading:
        task.cancel()
    node.drain()  # not ready; long-polls answer now instead of being cut at shutdown_timeout_s
    node.log.event("draining", inflight=node.inflight)
    await runner.cleanup()  # stops accepting, waits for in-flight requests up to shutdown_timeout
    if watcher is not None:
        await watcher.stop()
    await node.stop()
    logs.event("stopped", always=True)


def serve(config: NodeConfig, sock: socket.socket | None = None, *, accept_reset: bool = False) -> None:
    """Run a node on uvloop (when available) until a stop signal, logging as ``[node] log_level`` says."""
    logs.configure(config.node.log_level)
    try:
        import uvloop  # a dependency everywhere but on Windows, where asyncio's loop serves
    except ImportError:
        asyncio.run(run_node(config, sock, accept_reset=accept_reset))
    else:
        uvloop.run(run_node(config, sock, accept_reset=accept_reset))
