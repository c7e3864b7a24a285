#!/usr/bin/python3
"""A GStreamer RTSP server (GstRtspServer) serving one media file at rtsp://127.0.0.1:PORT/cam.

The file is made by the test with ffmpeg (H.264 + AAC in MP4, H.264 + G.711 mu-law in MOV,
or H.265 in MP4); it is not re-encoded: the elementary streams are payloaded as they are
(RFC 6184 H.264, RFC 7798 H.265, RFC 3640 mpeg4-generic AAC, RFC 3551 PCMU).

Every client gets its own pipeline (not shared), paced in real time from the start of the
file. --loop plays the file again and again on one timeline (segment seeks: timestamps keep
increasing across loops, as a camera's do). --user/--password require RTSP digest
authentication (RFC 2617 as RTSP uses it, RFC 2326 §D.2), or basic with --auth basic.
--tls-cert CERT --tls-key KEY (PEM files) serves RTSP over TLS only (rtsps://, RFC 7826
§19.x): every connection starts with a TLS handshake, RTP goes interleaved on it (TCP only).
--once serves one session only: once a client has sent PLAY the server stops listening
(later connections are refused), and it exits (status 0) when that client's connection closes
(after the file's RTCP BYE, say) -- a client that reconnects finds nobody, however fast.
Prints "READY rtsp://..." (or "READY rtsps://...") on stdout once listening. Runs until killed
(or, with --once, until its session ended).

Run with /usr/bin/python3 (needs python3-gi and gir1.2-gst-rtsp-server-1.0).
"""

import argparse
import os
import sys

import gi

gi.require_version("Gio", "2.0")
gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def launch_line(path, audio, video):
    """The factory's pipeline: demuxer -> parser -> RTP payloader per elementary stream."""
    demux = "matroskademux" if path.endswith(".mkv") else "qtdemux"
    loc = path.replace("\\", "\\\\").replace('"', '\\"')
    parts = [f'filesrc location="{loc}" ! {demux} name=d']
    if video == "h265":
        parts.append("d.video_0 ! queue ! h265parse ! rtph265pay name=pay0 pt=96 config-interval=-1")
    else:
        parts.append("d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1")
    if audio == "aac":
        parts.append("d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97")
    elif audio == "pcmu":
        parts.append("d.audio_0 ! queue ! rtppcmupay name=pay1 pt=0")
    return "( " + " ".join(parts) + " )"


def with_segment_flag(pad, info):
    """Turns every seek the RTSP server sends (PLAY with a Range) into a segment seek, so the
    demuxer posts SEGMENT_DONE instead of EOS at the end of the file."""
    event = info.get_event()
    if event.type != Gst.EventType.SEEK:
        return Gst.PadProbeReturn.OK
    rate, fmt, flags, start_type, start, stop_type, stop = event.parse_seek()
    if flags & Gst.SeekFlags.SEGMENT:
        return Gst.PadProbeReturn.OK
    seek = Gst.Event.new_seek(
        rate, fmt, flags | Gst.SeekFlags.SEGMENT, start_type, start, stop_type, stop
    )
    seek.set_seqnum(event.get_seqnum())
    pad.send_event(seek)
    return Gst.PadProbeReturn.DROP


def configure_loop(_factory, media):
    """Loops the media: segment seeks on its demuxer, and a non-flushing seek back to the
    start at every SEGMENT_DONE, so running time (and RTP timestamps) keep increasing."""
    demux = media.get_element().get_by_name("d")
    demux.connect(
        "pad-added",
        lambda _d, pad: pad.add_probe(Gst.PadProbeType.EVENT_UPSTREAM, with_segment_flag),
    )

    def on_prepared(media):
        element = media.get_element()
        bus = element.get_parent().get_bus()
        bus.enable_sync_message_emission()

        def seek_again():
            element.seek(
                1.0,
                Gst.Format.TIME,
                Gst.SeekFlags.SEGMENT,
                Gst.SeekType.SET,
                0,
                Gst.SeekType.NONE,
                -1,
            )
            return False

        def on_sync(_bus, message):
            if message.type == Gst.MessageType.SEGMENT_DONE:
                GLib.idle_add(seek_again)

        bus.connect("sync-message", on_sync)
        element.seek(
            1.0,
            Gst.Format.TIME,
            Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT,
            Gst.SeekType.SET,
            0,
            Gst.SeekType.NONE,
            -1,
        )

    media.connect("prepared", on_prepared)


def serve_once(server, loop):
    """--once: listens until the first client sends PLAY, then stops listening (a client
    connecting later is refused by the kernel), and quits the main loop when that client's
    connection closes. Returns whether the server listens."""
    try:
        listening = [server.create_source(None)]
    except GLib.Error as e:
        print(f"cannot listen: {e.message}", file=sys.stderr)
        return False
    listening[0].attach(None)

    def on_play(client, _context):
        if listening:
            # Destroyed and unreferenced: the listening socket is closed.
            listening.pop().destroy()
            client.connect("closed", lambda _client: loop.quit())

    server.connect("client-connected", lambda _server, client: client.connect("play-request", on_play))
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", required=True, help="media file made by ffmpeg")
    parser.add_argument("--audio", choices=["aac", "pcmu", "none"], default="aac")
    parser.add_argument("--h265", action="store_true", help="the file's video is H.265")
    parser.add_argument("--loop", action="store_true", help="play the file endlessly")
    parser.add_argument("--once", action="store_true", help="serve one session, then exit")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--auth", choices=["digest", "basic"], default="digest")
    parser.add_argument("--tls-cert", help="PEM certificate: serve rtsps:// (TLS) only")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file, args.audio, "h265" if args.h265 else "h264"))
    factory.set_shared(False)
    factory.set_eos_shutdown(False)
    if args.loop:
        factory.connect("media-configure", configure_loop)

    if args.user is not None or args.tls_cert is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        if args.tls_cert is not None:
            # TLS on every connection the server accepts (checked at "auth.check.connect").
            cert = Gio.TlsCertificate.new_from_files(args.tls_cert, args.tls_key or args.tls_cert)
            auth.set_tls_certificate(cert)
            # RTP interleaved on the TLS connection only: no clear-text UDP.
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        if args.user is None:
            # No credentials asked: everyone gets the role that may play the media.
            auth.set_default_token(token)
        elif args.auth == "basic":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password or "")
            auth.add_basic(basic, token)
        else:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password or "", token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role(
            "user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True
        )
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory("/cam", factory)
    loop = GLib.MainLoop()
    listens = serve_once(server, loop) if args.once else server.attach(None) != 0
    if not listens:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        sys.exit(1)
    scheme = "rtsp" if args.tls_cert is None else "rtsps"
    print(f"READY {scheme}://127.0.0.1:{args.port}/cam", flush=True)
    loop.run()
    if args.once:
        # Out at once: no pipeline teardown that could keep the process (and the port) busy.
        os._exit(0)


if __name__ == "__main__":
    main()
