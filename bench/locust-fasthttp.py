"""bench/locust-workers.sh, HTTP phase: Locust's own FastHttpUser requesting /healthz back to
back, the peer of bench/locust-http.yaml's users."""
from locust import FastHttpUser, task


class Health(FastHttpUser):
    @task
    def healthz(self):
        self.client.get("/healthz")
