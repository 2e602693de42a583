// The npm cometd 9 JavaScript client, run in Node.js through the
// cometd-nodejs-client adapter (XMLHttpRequest, and WebSocket from `ws`),
// against a Bayeux server. Driven by tests/interop/test_cometd_client.py.
//
// Usage: node cometd_client.mjs <node_modules dir> <endpoint URL> <json options>
//   options: {"transport": "websocket" | "long-polling", "channel": "/a/b"}
//
// A subscriber subscribes to the channel and to /chat/**, a second client
// publishes to both, the subscriber receives both. Every observation is one
// JSON line on stdout; the last is {"event": "done"} (exit 0) or
// {"event": "error"} (exit 1).

import { call, emit, endpoint, fail, load, options } from "./cometd_support.mjs";

const { adapt } = await load("cometd-nodejs-client", "cometd-nodejs-client.js");
adapt();
const { CometD } = await load("cometd", "cometd.js");

function makeClient(name) {
    const cometd = new CometD(name);
    if (options.transport === "long-polling") cometd.unregisterTransport("websocket");
    cometd.configure({ url: endpoint, logLevel: "warn" });
    cometd.addListener("/meta/connect", (message) => {
        if (message.successful) {
            emit("connect_reply", {
                client: name,
                transport: cometd.getTransport() ? cometd.getTransport().type : null,
                ext: message.ext || null,
            });
        }
    });
    cometd.addListener("/meta/unsuccessful", (message) => {
        emit("unsuccessful", { client: name, message });
    });
    return cometd;
}

function waitFor(predicate, what) {
    return new Promise((resolve, reject) => {
        const started = Date.now();
        (function poll() {
            if (predicate()) return resolve();
            if (Date.now() - started > 10000) return reject(new Error("timed out waiting for " + what));
            setTimeout(poll, 10);
        })();
    });
}

async function main() {
    const channel = options.channel;
    const subscriber = makeClient("subscriber");
    const publisher = makeClient("publisher");
    const received = [];

    for (const [name, client] of [["subscriber", subscriber], ["publisher", publisher]]) {
        const reply = await call((done) => client.handshake(done));
        emit("handshake", {
            client: name,
            successful: reply.successful,
            transport: client.getTransport() ? client.getTransport().type : null,
            supportedConnectionTypes: reply.supportedConnectionTypes || null,
            error: reply.error || null,
        });
        if (!reply.successful) throw new Error("handshake failed: " + JSON.stringify(reply));
    }

    for (const pattern of [channel, "/chat/**"]) {
        const reply = await call((done) =>
            subscriber.subscribe(pattern, (message) => {
                received.push(message);
                emit("message", { subscription: pattern, channel: message.channel, data: message.data });
            }, done),
        );
        emit("subscribed", { subscription: pattern, successful: reply.successful, error: reply.error || null });
        if (!reply.successful) throw new Error("subscribe failed: " + JSON.stringify(reply));
    }

    for (const [target, data] of [[channel, { text: "hello", n: 1 }], ["/chat/room/7", { text: "wild", n: 2 }]]) {
        const reply = await call((done) => publisher.publish(target, data, done));
        emit("published", { channel: target, successful: reply.successful, error: reply.error || null });
    }

    await waitFor(() => received.length >= 2, "two deliveries");
    emit("transport", {
        subscriber: subscriber.getTransport().type,
        publisher: publisher.getTransport().type,
    });
    for (const [name, client] of [["subscriber", subscriber], ["publisher", publisher]]) {
        emit("disconnecting", { client: name });
        const reply = await call((done) => client.disconnect(done));
        emit("disconnected", { client: name, successful: reply.successful });
    }
}

main().then(() => {
    emit("done");
    process.exit(0);
}, fail);
