# Source: qtconsole / jupyter_client's hb channel (kernel_client.hb_channel.is_beating,
# pause, unpause, time_to_dead), as qtconsole's kernel-died detection uses it.
import json
import time

from jupyter_client import KernelManager

km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
time.sleep(1.5)
alive = kc.is_alive()
kc.hb_channel.pause()
paused = kc.hb_channel.is_beating()
kc.hb_channel.unpause()
ttd = kc.hb_channel.time_to_dead > 0
kc.stop_channels()
km.shutdown_kernel(now=True)
print("RESULT", json.dumps({"alive": alive, "paused_beating": paused, "ttd": ttd}))
