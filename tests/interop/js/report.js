// What every Node.js peer script prints: one JSON line per event on stdout,
// and on any error an {"event":"error"} line and exit status 1.
'use strict';

function emit(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ event: event }, fields || {})) + '\n');
}

function fail(error) {
  emit('error', { message: String((error && error.stack) || (error && error.message) || error) });
  process.exit(1);
}

module.exports = { emit, fail };
