"""bench/locust-workers.sh: the master's load shape. 0 users for 3 s (each worker starts its
run and shard processes), then N devices and the broadcast user at RATE/s, until DURATION s."""
import os

from locust import LoadTestShape


class Hold(LoadTestShape):
    def tick(self):
        t = self.get_run_time()
        n, rate, end = int(os.environ["N"]), float(os.environ["RATE"]), float(os.environ["DURATION"])
        if t < 3:
            return (0, rate)
        if t < end:
            return (n + 1, rate)
        return None
