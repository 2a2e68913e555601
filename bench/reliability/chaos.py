#!/usr/bin/env python3
"""A mixed workload from two tenants while the daemon is killed with SIGKILL at random, then
what held: every job ended succeeded, every uploaded file is intact, and each tenant's
device-seconds in the usage ledger are within 2 % of the time its workers really ran.

Each tenant trains a first model and deploys it (before any kill); then, for the run, it
uploads JSONL files of random text, trains more models one after another, and asks its
deployment for completions, while the daemon is killed KILLS times (default 20) at random
intervals and started again at once on the same data directory. The time work ran is measured
outside the daemon: /proc is read every 50 ms for `mh-worker train` and `mh-worker serve`
processes (a job's or a replica's work directory names its tenant), each counted from its start
(from /proc/<pid>/stat) to when it was last seen; each holds one device.
  bench/reliability/chaos.py [KILLS] [SEED]
Needs a build (cmake --build --preset default) and python3."""
import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "default")
DAEMON = os.path.join(BIN, "platform", "main", "macrohardd")
MHCTL = os.path.join(BIN, "platform", "mhctl", "mhctl")
KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
WORK = tempfile.mkdtemp(prefix="mh-bench-chaos.")
DATA = os.path.join(WORK, "data")
TENANTS = ["alpha", "beta"]
TICK = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


class Daemon:
    """macrohardd on DATA, started again after each kill; `url` follows it."""

    def __init__(self):
        subprocess.run([MHCTL, "license", "keygen", "--key-id", "bench", "--out-dir",
                        os.path.join(WORK, "keys")], check=True, capture_output=True)
        self.proc, self.url, self.starts = None, None, 0
        self.start()

    def start(self):
        port_file = os.path.join(WORK, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        out = open(os.path.join(WORK, "daemon.log"), "ab")
        self.proc = subprocess.Popen(
            [DAEMON, "--data-dir", DATA, "--listen", "127.0.0.1:0", "--port-file", port_file,
             "--admin-key-file", os.path.join(WORK, "admin.key"), "--log-level", "warn",
             "--license-public-key", os.path.join(WORK, "keys", "bench.pub"),
             "--cpu-devices", "4"], stdout=out, stderr=out)
        for _ in range(600):
            if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
                break
            if self.proc.poll() is not None:
                sys.exit(f"macrohardd exited {self.proc.returncode}; see {WORK}/daemon.log")
            time.sleep(0.05)
        self.url = "http://127.0.0.1:" + open(port_file).read().strip()
        self.starts += 1

    def kill_and_restart(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.start()


daemon = Daemon()


def call(method, path, key, body=None, content_type="application/json", timeout=60):
    """(status, parsed body or bytes); status 0 when the daemon could not be reached."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(daemon.url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def until(f, what, timeout):
    end = time.time() + timeout
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def upload(key, name, content):
    boundary = "mhbench" + hashlib.sha256(content).hexdigest()[:16]
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"fine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/jsonl\r\n\r\n").encode()
    body += content + f"\r\n--{boundary}--\r\n".encode()
    return call("POST", "/v1/files", key, body, "multipart/form-data; boundary=" + boundary)


# Real text to train on: the project's own documentation, a line a row.
corpus = []
for name in sorted(os.listdir(os.path.join(ROOT, "docs"))):
    if name.endswith(".md"):
        corpus += [l.strip() for l in open(os.path.join(ROOT, "docs", name)) if len(l) > 40]
training = "".join(json.dumps({"text": l}) + "\n" for l in corpus[:600]).encode()


def random_jsonl(size):
    words = [rng.choice(corpus).split() for _ in range(8)]
    rows, n = [], 0
    while n < size:
        row = json.dumps({"text": " ".join(rng.choice(w) for w in words for _ in range(3)) +
                          " " + os.urandom(8).hex()}) + "\n"
        rows.append(row)
        n += len(row)
    return "".join(rows).encode()


# --- the tenants, each with a licence, an owner key and a first model, deployed ---
admin = open(os.path.join(WORK, "admin.key")).read().strip()
keys = {}
for t in TENANTS:
    lic = os.path.join(WORK, t + ".lic")
    subprocess.run([MHCTL, "license", "issue", "--key", os.path.join(WORK, "keys", "bench.key"),
                    "--licensee", t.title(), "--tenant", t, "--feature", "train", "--feature",
                    "deploy", "--max-gpus", "2", "--gpu-hours-per-month", "100",
                    "--max-deployments", "2", "--max-model-params", "10000000", "--days", "30",
                    "--out", lic], check=True, capture_output=True)
    env = dict(os.environ, MH_URL=daemon.url)
    subprocess.run([MHCTL, "--api-key-file", os.path.join(WORK, "admin.key"), "admin", "license",
                    "install", lic], check=True, capture_output=True, env=env)
    out = subprocess.run([MHCTL, "--api-key-file", os.path.join(WORK, "admin.key"), "admin",
                          "tenant", "key", t, "--name", "bench"], check=True,
                         capture_output=True, env=env, text=True).stdout
    keys[t] = next(w for w in out.split() if w.startswith("mh_live_"))

training_file = {}
for t in TENANTS:
    status, f = upload(keys[t], "docs.jsonl", training)
    assert status == 200, f
    training_file[t] = f["id"]


def create_job(t, epochs):
    return call("POST", "/v1/fine_tuning/jobs", keys[t], {
        "model": "mh-gpt2-tiny", "training_file": training_file[t], "checkpoint_interval": 10,
        "hyperparameters": {"n_epochs": epochs, "batch_size": 8}})


def job_status(t, job):
    status, j = call("GET", "/v1/fine_tuning/jobs/" + job, keys[t])
    return j if status == 200 else None


# --- the time work really ran, from /proc ---
class Workers(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.seen = {}  # (pid, start ticks) -> [tenant, kind, subject, start s, last seen s]
        self.stopping = False
        self.boot = time.time() - float(open("/proc/uptime").read().split()[0])

    def scan(self):
        now = time.time()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                if len(argv) < 2 or not argv[0].endswith(b"mh-worker"):
                    continue
                if argv[1] not in (b"train", b"serve"):
                    continue
                stat = open(f"/proc/{pid}/stat").read()
                start = int(stat[stat.rindex(")") + 2:].split()[19])
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            parts = os.path.relpath(cwd, DATA).split(os.sep)  # jobs|deployments/tenant/id/…
            entry = self.seen.setdefault((pid, start), [parts[1], parts[0], parts[2],
                                                        self.boot + start / TICK, now])
            entry[4] = now

    def run(self):
        while not self.stopping:
            self.scan()
            time.sleep(0.05)

    def seconds(self, tenant, subject=None):
        return sum(e[4] - e[3] for e in self.seen.values()
                   if e[0] == tenant and subject in (None, e[2]))

    def running(self):
        now = time.time()
        return sum(1 for e in self.seen.values() if now - e[4] < 0.5)


workers = Workers()
workers.start()


log(f"daemon at {daemon.url}, state in {WORK}; each tenant trains its first model")
first = {}
for t in TENANTS:
    status, j = create_job(t, 1)
    assert status == 200, j
    first[t] = j["id"]
deployment, model = {}, {}
for t in TENANTS:
    j = until(lambda: (lambda j: j if j and j["status"] in ("succeeded", "failed", "cancelled")
                       else None)(job_status(t, first[t])), "the first jobs", 900)
    assert j["status"] == "succeeded", j
    model[t] = j["fine_tuned_model"]
    status, d = call("POST", "/v1/deployments", keys[t], {"model": model[t]})
    assert status == 200, d
    deployment[t] = d["id"]
for t in TENANTS:
    until(lambda: (call("GET", "/v1/deployments/" + deployment[t], keys[t])[1] or {})
          .get("status") == "ready", "the deployments", 300)
log("deployed; the run begins")


stop = threading.Event()
uploaded, lost_uploads, jobs = [], [0], {t: [] for t in TENANTS}
completions = {"ok": 0, "failed": 0}
lock = threading.Lock()


def uploader(t):
    while not stop.is_set():
        content = random_jsonl(rng.randint(10_000, 500_000))
        status, f = upload(keys[t], "chaos.jsonl", content)
        with lock:
            if status == 200:
                uploaded.append((t, f["id"], hashlib.sha256(content).hexdigest(), len(content)))
            else:
                lost_uploads[0] += 1  # the daemon died under it: not acknowledged, tried again
        stop.wait(rng.uniform(1, 4))


def trainer(t):
    while not stop.is_set():
        status, j = create_job(t, 8)
        if status != 200:
            stop.wait(1)
            continue
        with lock:
            jobs[t].append(j["id"])
        while not stop.is_set():
            j = job_status(t, jobs[t][-1])
            if j and j["status"] in ("succeeded", "failed", "cancelled"):
                break
            stop.wait(1)


def asker(t):
    while not stop.is_set():
        status, _ = call("POST", "/v1/completions", keys[t],
                         {"model": model[t], "prompt": rng.choice(corpus)[:40], "max_tokens": 16},
                         timeout=30)
        with lock:
            completions["ok" if status == 200 else "failed"] += 1
        if status != 200:
            stop.wait(0.5)


threads = [threading.Thread(target=f, args=(t,), daemon=True)
           for t in TENANTS for f in (uploader, trainer, asker)]
for th in threads:
    th.start()
began = time.time()
for i in range(KILLS):
    time.sleep(rng.uniform(5, 25))
    running = workers.running()
    daemon.kill_and_restart()
    log(f"kill {i + 1}/{KILLS}: {running} workers were running; {len(uploaded)} files, "
        f"{sum(len(v) for v in jobs.values())} jobs so far")
time.sleep(10)
stop.set()
for th in threads:
    th.join(timeout=120)
log(f"kills done after {time.time() - began:.0f} s; waiting for the jobs to end")

# --- what held ---
failures = []
# Every job the tenants have (acknowledged or not) must end succeeded.
for t in TENANTS:
    def all_ended():
        status, page = call("GET", "/v1/fine_tuning/jobs?limit=100", keys[t])
        if status != 200:
            return None
        if any(j["status"] not in ("succeeded", "failed", "cancelled") for j in page["data"]):
            return None
        return page["data"]
    listed = until(all_ended, "the jobs to end", 1800)
    for j in listed:
        if j["status"] != "succeeded":
            failures.append(f"job {j['id']} ({t}) ended {j['status']}: {j.get('error')}")
    missing = set(jobs[t]) - {j["id"] for j in listed}
    failures += [f"job {m} ({t}) acknowledged but not listed" for m in missing]
    log(f"{t}: {len(listed)} jobs, {sum(j['status'] == 'succeeded' for j in listed)} succeeded")
# Every acknowledged upload is there, byte for byte.
intact = 0
for t, fid, digest, size in uploaded:
    status, content = call("GET", f"/v1/files/{fid}/content", keys[t], timeout=120)
    if status == 200 and isinstance(content, bytes) and hashlib.sha256(content).hexdigest() == digest:
        intact += 1
    else:
        failures.append(f"file {fid} ({t}, {size} bytes): {status}, not intact")
log(f"files: {intact} of {len(uploaded)} acknowledged uploads intact "
    f"({lost_uploads[0]} uploads cut by a kill, never acknowledged)")
# The deployments go, the workers end, the ledger has all of it.
for t in TENANTS:
    call("DELETE", "/v1/deployments/" + deployment[t], keys[t])
until(lambda: workers.running() == 0, "the workers to end", 120)
time.sleep(7)  # the last usage flush
workers.stopping = True
workers.join()
for t in TENANTS:
    status, usage = call("GET", "/v1/usage?dimension=gpu_seconds&bucket_width=total", keys[t])
    billed = usage["totals"].get("gpu_seconds", 0) if status == 200 else 0
    ran = workers.seconds(t)
    off = (billed - ran) / ran * 100
    log(f"{t}: ledger {billed:.1f} device-seconds, workers ran {ran:.1f} s: {off:+.2f} %")
    if abs(off) > 2:
        failures.append(f"{t}: ledger off by {off:+.2f} %")
    if abs(off) > 2 or os.environ.get("CHAOS_SUBJECTS"):
        _, by = call("GET", "/v1/usage?dimension=gpu_seconds&bucket_width=total&group_by=subject",
                     keys[t])
        for line in by["data"]:
            log(f"  {line['subject_id']}: ledger {line['quantity']:.1f} ({line['records']} "
                f"records), workers {workers.seconds(t, line['subject_id']):.1f}")
log(f"completions: {completions['ok']} answered, {completions['failed']} failed "
    f"(the daemon was down or restarting); daemon started {daemon.starts} times")
daemon.proc.send_signal(signal.SIGTERM)
daemon.proc.wait()
for f in failures:
    log("FAILED:", f)
log("held" if not failures else f"{len(failures)} failures; state kept in {WORK}")
if not failures:
    subprocess.run(["rm", "-rf", WORK])
sys.exit(1 if failures else 0)
