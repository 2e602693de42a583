// CometD's remote calls and timesync, and terminal handshake refusals, from
// the npm cometd 9 client (Node.js via cometd-nodejs-client) and Faye 1.4.3.
// Driven by tests/interop/test_cometd_extras.py.
//
// Usage: node cometd_extras.mjs <node_modules dir> <endpoint URL> <json options>
//   options: {"mode": "remote" | "terminal" | "faye-terminal" | "faye-service",
//             "transport": "websocket" | "long-polling"}
//
// Every observation is one JSON line on stdout; the last is {"event": "done"}
// (exit 0) or {"event": "error"} (exit 1).

import path from "node:path";
import { createRequire } from "node:module";
import { call, emit, endpoint, fail, load, nodeModules, options } from "./cometd_support.mjs";

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// How long a refused client is watched for retries: a client that loops
// (every 100 ms for Faye with retry 0.1, after its back-off for CometD)
// would handshake again well within it.
const WATCH_MS = 1500;

async function cometdClient() {
    const { adapt } = await load("cometd-nodejs-client", "cometd-nodejs-client.js");
    adapt();
    const { CometD } = await load("cometd", "cometd.js");
    const cometd = new CometD();
    if (options.transport === "long-polling") cometd.unregisterTransport("websocket");
    cometd.configure({ url: endpoint, logLevel: "warn" });
    return cometd;
}

async function remote() {
    const cometd = await cometdClient();
    const { TimeSyncExtension } = await load("cometd", "TimeSyncExtension.js");
    const timesync = new TimeSyncExtension();
    cometd.registerExtension("timesync", timesync);
    const synced = [];
    cometd.addListener("/meta/connect", (message) => {
        if (message.ext && message.ext.timesync) synced.push(message.ext.timesync);
    });
    const reply = await call((done) => cometd.handshake(done));
    emit("handshake", { successful: reply.successful, timesync: (reply.ext || {}).timesync || null });
    for (const [target, content] of [["echo", { text: "hi" }], ["fail", 1], ["echo", [1, 2]]]) {
        const result = await call((done) => cometd.remoteCall(target, content, 5000, done));
        emit("remote", {
            target,
            successful: result.successful,
            data: result.data === undefined ? "(none)" : result.data,
            error: result.error || null,
        });
    }
    // A few connect round trips, each answered with timesync.
    const deadline = Date.now() + 10000;
    while (synced.length < 2 && Date.now() < deadline) await sleep(20);
    emit("timesync", {
        samples: synced.length,
        last: synced[synced.length - 1] || null,
        offset: timesync.getTimeOffset(),
        lag: timesync.getNetworkLag(),
    });
    const bye = await call((done) => cometd.disconnect(done));
    emit("disconnected", { successful: bye.successful });
}

async function terminal() {
    const cometd = await cometdClient();
    cometd.registerExtension("token", {
        outgoing(message) {
            if (message.channel === "/meta/handshake") message.ext = { token: "bad" };
            return message;
        },
    });
    let attempts = 0;
    cometd.addListener("/meta/handshake", (message) => {
        attempts += 1;
        emit("handshake", { successful: message.successful, error: message.error || null, advice: message.advice || null });
    });
    cometd.handshake();
    await sleep(WATCH_MS);
    emit("watched", { attempts, status: cometd.getStatus() });
}

function fayeClient() {
    const require = createRequire(path.join(nodeModules, "faye", "package.json"));
    const faye = require("faye");
    const client = new faye.Client(endpoint, { retry: 0.1, timeout: 5 });
    if (options.transport === "long-polling") client.disable("websocket");
    return client;
}

async function fayeTerminal() {
    const client = fayeClient();
    let attempts = 0;
    client.addExtension({
        outgoing(message, callback) {
            if (message.channel === "/meta/handshake") message.ext = { token: "bad" };
            callback(message);
        },
        incoming(message, callback) {
            if (message.channel === "/meta/handshake") {
                attempts += 1;
                emit("handshake", { successful: message.successful, advice: message.advice || null });
            }
            callback(message);
        },
    });
    client.connect();
    await sleep(WATCH_MS);
    emit("watched", { attempts });
}

// A Faye client has no remoteCall: it subscribes to the service channel
// (accepted, never broadcast) and the result of its publish comes to that
// subscription, to this client alone.
async function fayeService() {
    const client = fayeClient();
    const results = [];
    await client.subscribe("/service/echo", (data) => results.push(data));
    await client.publish("/service/echo", { text: "from faye" });
    const deadline = Date.now() + 10000;
    while (results.length < 1 && Date.now() < deadline) await sleep(20);
    emit("result", { results });
    await client.disconnect();
}

const modes = { remote, terminal, "faye-terminal": fayeTerminal, "faye-service": fayeService };

modes[options.mode]().then(() => {
    emit("done");
    process.exit(0);
}, fail);
