"""Example 3 of the product brief: a furniture shop.

User 789, in a first apartment, puts modern pieces in the $200-800 range in the cart, reads their
reviews, and bounces off a $1,200 antique. What should the shop show first?

  python examples/furniture_shop.py [--url http://127.0.0.1:5000]
"""
import random

from _common import client_from_args, expect, learn, send, show

ITEMS = {"ItemA": ("IKEA Sofa", "modern", 450), "ItemB": ("West Elm Chair", "mid-century", 750),
         "ItemC": ("Vintage Dresser", "antique", 1200)}
for k in range(1, 9):
    ITEMS["modern-{}".format(k)] = ("Modern piece #{}".format(k), "modern", 150 + 50 * k)
    ITEMS["antique-{}".format(k)] = ("Antique #{}".format(k), "antique", 1000 + 150 * k)


def act(user, item, action_type, label, **parameters):
    return {"user_id": user, "item_id": item, "action_type": action_type, "label": label, "parameters": parameters}


def main():
    client = client_from_args(__doc__)
    rng = random.Random(789)
    modern = [i for i, v in ITEMS.items() if v[1] == "modern"]
    antique = [i for i, v in ITEMS.items() if v[1] == "antique"]
    actions = []
    for k in range(60):  # first-apartment shoppers: modern and affordable in the cart, antiques bounced
        user = "renter-{}".format(k)
        for item in rng.sample(modern, 4) + ["ItemA"]:
            actions.append(act(user, item, "add_to_cart", 1, quantity=1, delivery="express"))
        for item in rng.sample(antique, 2) + ["ItemC"]:
            actions.append(act(user, item, "view", 0, time_spent_s=15, bounced=True, reason="price_too_high"))
    for k in range(40):  # collectors: the other way round
        user = "collector-{}".format(k)
        actions += [act(user, i, "add_to_cart", 1, quantity=1, delivery="white_glove") for i in rng.sample(antique, 4)]
        actions += [act(user, i, "view", 0, time_spent_s=5, bounced=True, reason="style") for i in rng.sample(modern, 2)]
    actions += [act(789, "ItemA", "add_to_cart", 1, quantity=1, color="gray", delivery="express"),
                act(789, "ItemA", "view_reviews", 1, time_spent_s=300, filter="recent_reviews"),
                act(789, "ItemB", "save_wishlist", 1, list_name="future_purchases"),
                act(789, "ItemC", "view", 0, time_spent_s=15, bounced=True, reason="price_too_high")]
    items = {i: {"name": n, "style": s, "price": p} for i, (n, s, p) in ITEMS.items()}
    print("Sending {} shopping actions...".format(len(actions)))
    stored = send(client, actions, users={789: {"age": 28, "home": "first_apartment"}}, items=items)
    learn(client, stored)
    print("For user 789, among a sofa, a chair, a dresser and a modern lamp:")
    ranked = show(client, 789, ["ItemA", "ItemB", "ItemC", "modern-1"], {i: v[0] for i, v in ITEMS.items()})
    expect(ranked[-1] == "ItemC" and ranked.index("modern-1") < ranked.index("ItemC"),
           "The $1,200 antique dresser comes last: user 789 bounced off it as too expensive, as shoppers like them "
           "do; modern pieces in their price range come before it.")


if __name__ == "__main__":
    main()
