// The npm cometd 9 client with its AckExtension (Node.js via
// cometd-nodejs-client), subscribed through a lossy proxy. Driven by
// tests/interop/test_cometd_ack.py, which breaks the path and publishes.
//
// Usage: node cometd_ack.mjs <node_modules dir> <endpoint URL> <json options>
//   options: {"transport": "websocket" | "long-polling", "ack": true | false}
//
// It handshakes (with the AckExtension registered when "ack" is true),
// subscribes to /news and reports {"event": "ready", clientId}; then each
// delivery as {"event": "message", data} and each successful connect reply
// as {"event": "connect", id, ext}. On the delivery "end" it disconnects and
// prints {"event": "done"} (exit 0); failures print {"event": "error"} (exit 1).

import { call, emit, endpoint, fail, load, options } from "./cometd_support.mjs";

async function main() {
    const { adapt } = await load("cometd-nodejs-client", "cometd-nodejs-client.js");
    adapt();
    const { CometD } = await load("cometd", "cometd.js");
    const cometd = new CometD();
    if (options.ack) {
        const { AckExtension } = await load("cometd", "AckExtension.js");
        cometd.registerExtension("ack", new AckExtension());
    }
    if (options.transport === "long-polling") cometd.unregisterTransport("websocket");
    // A lost reply is given up 1 s after the server's hold (1 s) would end.
    cometd.configure({ url: endpoint, logLevel: "warn", maxNetworkDelay: 1000 });
    cometd.addListener("/meta/connect", (message) => {
        if (message.successful) emit("connect", { id: message.id, ext: message.ext || null });
    });

    const handshake = await call((done) => cometd.handshake(done));
    emit("handshake", { successful: handshake.successful, ext: handshake.ext || null });
    if (!handshake.successful) throw new Error("handshake failed: " + JSON.stringify(handshake));

    let finish;
    const finished = new Promise((resolve) => (finish = resolve));
    const reply = await call((done) =>
        cometd.subscribe("/news", (message) => {
            emit("message", { data: message.data });
            if (message.data === "end") finish();
        }, done),
    );
    if (!reply.successful) throw new Error("subscribe failed: " + JSON.stringify(reply));
    emit("ready", { clientId: cometd.getClientId(), transport: cometd.getTransport().type });
    await finished;
    await call((done) => cometd.disconnect(done));
}

main().then(() => {
    emit("done");
    process.exit(0);
}, fail);
