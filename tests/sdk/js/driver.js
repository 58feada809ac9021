// The public Satori RTM JavaScript SDK (satori-rtm-sdk 1.2.2, unchanged) driven by JSON lines, for the
// end-to-end tests (tests/support/satori_sdk.py starts it; tests/sdk/python/driver.py is its Python twin).
//
//   node driver.js '{"endpoint": "ws://127.0.0.1:8765", "appkey": "K", "role": "R", "secret": "S", "protocol": "cbor"}'
//
// stdin: one command per line, e.g. {"cmd": "publish", "ref": 3, "channel": "c", "message": {...}}
//   subscribe {id, mode: SIMPLE|RELIABLE|ADVANCED, body}   publish {channel, message}   read {channel}
//   write {channel, message}   delete {channel}   exit
// stdout: one event per line, as the SDK reports it: connected, disconnected, auth_failed, subscribed,
//   subscribe_failed, data, info, subscription_error, reply (the ack of a ref'd command), error
'use strict';

var readline = require('readline');
var RTM = require('satori-rtm-sdk');

// The SDK logs with console.log: its lines go to stderr, so that stdout carries nothing but events
console.log = console.error;

var config = JSON.parse(process.argv[2]);
var rtm = new RTM(config.endpoint, config.appkey, {
  protocol: config.protocol,
  authProvider: RTM.roleSecretAuthProvider(config.role, config.secret),
  // the tests restart nothing: a reconnect is something to report, not to hide behind a quick retry
  minReconnectInterval: 1000,
});

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

rtm.on('enter-connected', function () {
  // authenticated: with an auth provider the SDK enters "connected" only once it succeeded. The sub-protocol
  // is the one the server selected: the SDK speaks CBOR only when it is "cbor"
  emit({ event: 'connected', protocol: rtm.ws.protocol || '' });
});
rtm.on('leave-connected', function () {
  emit({ event: 'disconnected' });
});
rtm.on('error', function (error) {
  // the role secret provider fails with the reply PDU itself
  if (error && typeof error.action === 'string' && error.action.indexOf('auth/') === 0) {
    emit({ event: 'auth_failed', reason: (error.body && error.body.reason) || error.action, body: error.body });
    return;
  }
  emit({ event: 'error', message: String((error && error.message) || error) });
});

function subscribe(command) {
  var mode = RTM.SubscriptionMode[command.mode || 'SIMPLE'];
  var sub = rtm.subscribe(command.id, mode, command.body || {});
  sub.on('rtm/subscribe/ok', function (pdu) {
    emit({ event: 'subscribed', id: command.id, body: pdu.body });
  });
  sub.on('rtm/subscribe/error', function (pdu) {
    emit({ event: 'subscribe_failed', id: command.id, reason: pdu.body.error, body: pdu.body });
  });
  sub.on('rtm/subscription/data', function (pdu) {
    emit({ event: 'data', id: pdu.body.subscription_id, messages: pdu.body.messages, position: pdu.body.position });
  });
  sub.on('rtm/subscription/info', function (pdu) {
    emit({ event: 'info', id: pdu.body.subscription_id, info: pdu.body.info, body: pdu.body });
  });
  sub.on('rtm/subscription/error', function (pdu) {
    emit({ event: 'subscription_error', id: pdu.body.subscription_id, body: pdu.body });
  });
}

function replier(ref) {
  return function (pdu) {
    emit({ event: 'reply', ref: ref, action: pdu.action, body: pdu.body === undefined ? null : pdu.body });
  };
}

var commands = {
  subscribe: subscribe,
  publish: function (c) { rtm.publish(c.channel, c.message, replier(c.ref)); },
  read: function (c) { rtm.read(c.channel, replier(c.ref)); },
  write: function (c) { rtm.write(c.channel, c.message, replier(c.ref)); },
  delete: function (c) { rtm.delete(c.channel, replier(c.ref)); },
  exit: function () { rtm.stop(); process.exit(0); },
};

readline.createInterface({ input: process.stdin }).on('line', function (line) {
  var command;
  if (!line.trim()) {
    return;
  }
  command = JSON.parse(line);
  try {
    commands[command.cmd](command);
  } catch (error) {
    emit({ event: 'error', ref: command.ref, message: String(error.message || error) });
  }
}).on('close', function () {
  process.exit(0);
});

rtm.start();
