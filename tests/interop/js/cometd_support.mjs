// What the cometd_*.mjs scripts share: their command line
// (<node_modules dir> <endpoint URL> <json options>), one JSON line per event
// on stdout, and loading the npm cometd modules.
//
// cometd and cometd-nodejs-client are ES modules, and ES module resolution
// ignores NODE_PATH, so they are imported from the given node_modules folder
// by absolute path.

import path from "node:path";
import { pathToFileURL } from "node:url";

export const [nodeModules, endpoint, rawOptions] = process.argv.slice(2);
export const options = JSON.parse(rawOptions || "{}");

export function emit(event, fields) {
    process.stdout.write(JSON.stringify({ event, ...(fields || {}) }) + "\n");
}

export function fail(error) {
    emit("error", { message: String((error && error.stack) || error) });
    process.exit(1);
}

export function load(name, file) {
    return import(pathToFileURL(path.join(nodeModules, name, file)).href);
}

// A cometd callback API as a promise of the callback's argument.
export function call(fn) {
    return new Promise((resolve) => fn(resolve));
}
