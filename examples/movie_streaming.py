"""Example 1 of the product brief: a movie streaming service.

User 123 finished "Blade Runner 2049" and rated it 5 stars, and abandoned "John Wick" at 40 %. Viewers
like them finish sci-fi and abandon romance. Which of the three should come first for user 123?

  python examples/movie_streaming.py [--url http://127.0.0.1:5000]
"""
import random

from _common import client_from_args, expect, learn, send, show

MOVIES = {"MovieA": ("Blade Runner 2049", "sci-fi", 2017), "MovieB": ("The Notebook", "romance", 2004),
          "MovieC": ("John Wick", "action", 2014)}
for k in range(1, 9):
    MOVIES["scifi-{}".format(k)] = ("Sci-fi #{}".format(k), "sci-fi", 2000 + k)
    MOVIES["romance-{}".format(k)] = ("Romance #{}".format(k), "romance", 2000 + k)
    MOVIES["action-{}".format(k)] = ("Action #{}".format(k), "action", 2000 + k)


def watch(user, movie, completion, **extra):
    """A watch is positive when the viewer finished most of it."""
    return {"user_id": user, "item_id": movie, "action_type": "watch", "label": 1 if completion >= 0.8 else 0,
            "parameters": dict({"completion": completion, "device": "tv"}, **extra)}


def main():
    client = client_from_args(__doc__)
    rng = random.Random(123)
    by_genre = {g: [m for m, (_, genre, _) in MOVIES.items() if genre == g] for g in ("sci-fi", "romance", "action")}
    actions = []
    for k in range(80):  # sci-fi fans: finish sci-fi (Blade Runner too), half-watch action, abandon romance
        user = "viewer-{}".format(k)
        for movie in rng.sample(by_genre["sci-fi"], 4) + ["MovieA"]:
            actions.append(watch(user, movie, round(rng.uniform(0.85, 1.0), 2), rating=rng.choice([4, 5])))
        for movie in rng.sample(by_genre["romance"], 2) + ["MovieB"]:
            actions.append(watch(user, movie, round(rng.uniform(0.05, 0.2), 2), abandoned=True))
        actions.append(watch(user, rng.choice(by_genre["action"]), round(rng.uniform(0.3, 0.9), 2)))
    # User 123, as the brief tells it.
    actions += [watch(123, "MovieA", 0.95, duration_min=120, rating=5), watch(123, "scifi-1", 0.9, rating=4),
                watch(123, "MovieC", 0.4, duration_min=45, abandoned=True)]
    items = {m: {"title": t, "genre": g, "year": y} for m, (t, g, y) in MOVIES.items()}
    print("Sending {} watches and {} movies...".format(len(actions), len(items)))
    stored = send(client, actions, users={123: {"age": 25, "location": "NYC"}}, items=items)
    learn(client, stored)
    print("Recommendations for user 123:")
    ranked = show(client, 123, ["MovieA", "MovieB", "MovieC"], {m: t for m, (t, _, _) in MOVIES.items()})
    expect(ranked[0] == "MovieA",
           "Blade Runner 2049 comes first: user 123 finished it and rated it 5 stars, and viewers with the same "
           "taste finish it too. Below it, John Wick, which user 123 abandoned at 40 %, and The Notebook, which "
           "viewers with their taste abandon.")


if __name__ == "__main__":
    main()
