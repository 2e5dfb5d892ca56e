"""Example 2 of the product brief: a movie theatre chain.

User 456, a parent, books family shows on weekend afternoons for four and bounced off a late R-rated
show. Which showtimes should the app put first?

  python examples/theatre_chain.py [--url http://127.0.0.1:5000]
"""
import random

from _common import client_from_args, expect, learn, send, show

SHOWS = {"ShowtimeA": ("Frozen 3, Sat 2:00 PM", "animation", "afternoon", "G"),
         "ShowtimeB": ("John Wick 5, Fri 10:30 PM", "action", "late", "R"),
         "ShowtimeC": ("Spider-Man, Sun 4:00 PM", "action", "afternoon", "PG-13")}
for k in range(1, 7):
    SHOWS["family-{}".format(k)] = ("Family show #{}".format(k), "animation", "afternoon", "G")
    SHOWS["late-{}".format(k)] = ("Late show #{}".format(k), "thriller", "late", "R")


def book(user, show_id, tickets):
    return {"user_id": user, "item_id": show_id, "action_type": "book_tickets", "label": 1,
            "parameters": {"tickets": tickets, "seats": "family_section" if tickets > 2 else "standard",
                           "snacks": tickets > 2, "advance_days": 3 if tickets > 2 else 0}}


def bounce(user, show_id, reason):
    return {"user_id": user, "item_id": show_id, "action_type": "view_details", "label": 0,
            "parameters": {"time_spent_s": 10, "bounced": True, "reason": reason}}


def main():
    client = client_from_args(__doc__)
    rng = random.Random(456)
    family = [s for s, v in SHOWS.items() if v[2] == "afternoon" and v[3] in ("G", "PG-13")]
    late = [s for s, v in SHOWS.items() if v[2] == "late"]
    actions, users = [], {456: {"age": 30, "household": "family_with_kids", "location": "suburban_mall"}}
    for k in range(60):  # families: afternoon family shows for four; they bounce off late shows
        user = "family-{}".format(k)
        users[user] = {"household": "family_with_kids"}
        actions += [book(user, s, 4) for s in rng.sample(family, 4)]
        actions += [bounce(user, s, "too_late") for s in rng.sample(late, 3)]
    for k in range(60):  # night owls: late shows for two; they skip the matinees
        user = "owl-{}".format(k)
        users[user] = {"household": "couple"}
        actions += [book(user, s, 2) for s in rng.sample(late, 4)]
        actions += [bounce(user, s, "kids_movie") for s in rng.sample(family, 2)]
    actions += [book(456, "family-1", 4), book(456, "family-2", 4), bounce(456, "ShowtimeB", "too_late")]
    items = {s: {"title": t, "genre": g, "slot": slot, "rating": r} for s, (t, g, slot, r) in SHOWS.items()}
    print("Sending {} bookings and views...".format(len(actions)))
    stored = send(client, actions, users=users, items=items)
    learn(client, stored)
    print("Showtimes for user 456:")
    ranked = show(client, 456, ["ShowtimeA", "ShowtimeB", "ShowtimeC"], {s: v[0] for s, v in SHOWS.items()})
    expect(ranked[0] == "ShowtimeA" and ranked[-1] == "ShowtimeB",
           "Frozen 3 on Saturday afternoon comes first: families like user 456 book afternoon family shows for "
           "four; the 10:30 PM John Wick comes last: user 456 bounced off it as too late, as families do.")


if __name__ == "__main__":
    main()
