"""Connects with the Eclipse Paho MQTT client (another codebase than ours) and prints
the CONNACK it got as JSON: {"rc": <reason code>} or {"rc": null} when none came.
Usage: connect.py HOST PORT 3.1.1|5 KEEPALIVE [USERNAME PASSWORD [CLIENT_ID]]"""
import json
import sys
import threading

import paho.mqtt.client as mqtt

host, port, version, keepalive = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
client_id = sys.argv[7] if len(sys.argv) > 7 else "conformance"
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
if len(sys.argv) > 6 and sys.argv[5]:
    c.username_pw_set(sys.argv[5], sys.argv[6])
got = {"rc": None}
done = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties):
    got["rc"] = reason_code.value
    done.set()


c.on_connect = on_connect
c.connect(host, port, keepalive=keepalive)
c.loop_start()
done.wait(5)
c.loop_stop()
print(json.dumps(got))
