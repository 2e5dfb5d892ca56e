"""What every example shares: the client from the command line, and waiting until the service has
learnt what was sent, whichever way it trains (a continuous trainer, the default; or one-shot runs)."""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "clients", "python"))  # run from a checkout, not installed

from easyrec_online_client import Client  # noqa: E402


def client_from_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=os.environ.get("EASYREC_URL", "http://127.0.0.1:5000"))
    parser.add_argument("--api-key", default=os.environ.get("EASYREC_API_KEY"), help="an admin key, if keys are set")
    args = parser.parse_args()
    return Client(args.url, api_key=args.api_key)


def send(client, actions, users=None, items=None):
    """Profiles first (they become features), then the actions, reporting progress."""
    if users:
        client.put_users(users)
    if items:
        client.put_items(items)
    before = client.streaming_status()["consumer"]["stored_actions"]
    ids = client.add_actions(actions, progress=lambda n: print("  {} actions accepted".format(n), end="\r"))
    print("  {} actions accepted".format(len(ids)))
    return before + len(set(ids))


def learn(client, stored_at_least, timeout_s=600):
    """Until the actions are stored and a model has learnt them."""
    deadline = time.monotonic() + timeout_s
    while client.streaming_status()["consumer"]["stored_actions"] < stored_at_least:
        if time.monotonic() > deadline:
            raise SystemExit("the actions were not stored in {} s".format(timeout_s))
        time.sleep(0.5)
    if client.training_status().get("continuous_training"):
        print("  the continuous trainer is learning them...")
        while True:
            online = client.model_info().get("online") or {}
            if client.health().get("model_version") and online.get("awaiting_update") == 0:
                return
            if time.monotonic() > deadline:
                raise SystemExit("no model has learnt the actions in {} s".format(timeout_s))
            time.sleep(1.0)
    print("  training...")
    client.start_training()
    status = client.wait_for_training(timeout_s=timeout_s)
    if status["status"] != "succeeded":
        raise SystemExit("training {}: {}".format(status["status"], (status.get("job") or {}).get("error")))


def show(client, user, candidates, names):
    answer = client.recommend(user, candidates, top_k=len(candidates))
    ranked = [r["item_id"] for r in answer["recommendations"]]
    for position, rec in enumerate(answer["recommendations"], 1):
        print("  {}. {:<32} {:.2f}".format(position, names.get(rec["item_id"], rec["item_id"]), rec["score"]))
    return ranked


def expect(condition, why):
    """The sentence that says why the ranking makes sense, or a non-zero exit when it does not."""
    if not condition:
        print("NOT LEARNT YET: " + why)
        raise SystemExit(1)
    print(why)
