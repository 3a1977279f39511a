// Makes one socket call fail for real and logs Node's own error the way an
// application does: an ISO timestamp, then String(err) (tests/test_program_logs.py).
//   node fail.js MODE PORT
// MODE: read-reset (write, the server resets: "read ECONNRESET"),
//       write-epipe (half-open socket: write until the kernel says EPIPE),
//       ended (the server's FIN, then a write: Node's own "ended by the other party"),
//       refused (connect to a closed port), hang-up (http.get, the server closes),
//       tls (tls.connect, the server closes), fetch (undici's fetch, the server closes).
"use strict";
const net = require("net");
const http = require("http");
const [mode, portText] = process.argv.slice(2);
const port = Number(portText);
const log = (err) => { console.log(`${new Date().toISOString()} ${String(err)}`); process.exit(0); };

if (mode === "hang-up" ) {
  http.get({ host: "127.0.0.1", port, path: "/", agent: false }, () => {}).on("error", log);
} else if (mode === "tls") {
  // A TLS client meets a server that closes before any handshake.
  require("tls").connect({ port, host: "127.0.0.1", rejectUnauthorized: false }).on("error", log);
} else if (mode === "fetch") {
  // undici (Node's fetch): the error's cause holds the socket's story.
  fetch(`http://127.0.0.1:${port}/`).catch((err) => log(`${String(err)} [cause]: ${String(err.cause)}`));
} else if (mode === "refused") {
  net.connect(port, "127.0.0.1").on("error", log);
} else {
  const sock = net.connect({ port, host: "127.0.0.1", allowHalfOpen: mode === "write-epipe" });
  sock.on("error", log);
  if (mode === "read-reset") {
    sock.on("connect", () => sock.write("hello\n"));
  } else if (mode === "ended") {
    // Node ends (and destroys) our side itself once 'end' has been emitted
    // (allowHalfOpen false); a write one loop turn later meets lib/net.js
    // writeAfterFIN, which hands its EPIPE to the write's callback.
    sock.on("end", () => setImmediate(() => sock.write("after the peer's FIN\n", (err) => err && log(err))));
    sock.resume();
  } else if (mode === "write-epipe") {
    sock.on("end", () => {
      // FIN received, our side stays open: the first write draws the peer's RST,
      // a later one fails in write() with EPIPE. Bounded: at most 100000 writes.
      let left = 100000;
      const again = () => { if (left-- > 0 && !sock.destroyed) { sock.write("x"); setImmediate(again); } };
      again();
    });
    sock.resume();
  } else {
    console.error(`unknown mode ${mode}`);
    process.exit(2);
  }
}
