"""Example 4 of the product brief: a smart agriculture platform.

Farmer 101 waters corn early in the morning with drip irrigation at low soil moisture, and tends
corn fields more than anything else. Which field should the platform suggest tending next?

  python examples/smart_agriculture.py [--url http://127.0.0.1:5000]
"""
import random

from _common import client_from_args, expect, learn, send, show

FIELDS = {"CornField3": ("Corn Field #3", "corn"), "CornField4": ("Corn Field #4", "corn"),
          "SoybeanField1": ("Soybean Field #1", "soybean"), "WheatField2": ("Wheat Field #2", "wheat")}
for k in range(5, 11):
    FIELDS["CornField{}".format(k)] = ("Corn Field #{}".format(k), "corn")
    FIELDS["RiceField{}".format(k)] = ("Rice Paddy #{}".format(k), "rice")


def water(farmer, field, moisture):
    return {"user_id": farmer, "item_id": field, "action_type": "watering", "label": 1, "parameters": {
        "amount_inches": 2, "method": "drip_irrigation", "soil_moisture": moisture, "timing": "early_morning"}}


def skip(farmer, field):
    return {"user_id": farmer, "item_id": field, "action_type": "inspect", "label": 0,
            "parameters": {"decision": "not_needed"}}


def main():
    client = client_from_args(__doc__)
    rng = random.Random(101)
    corn = [f for f, v in FIELDS.items() if v[1] == "corn"]
    rice = [f for f, v in FIELDS.items() if v[1] == "rice"]
    actions = []
    for k in range(60):  # corn growers water corn, and look at rice paddies without acting
        farmer = "grower-{}".format(k)
        actions += [water(farmer, f, round(rng.uniform(0.2, 0.35), 2)) for f in rng.sample(corn, 4)]
        actions += [skip(farmer, f) for f in rng.sample(rice, 2)]
    for k in range(40):  # rice growers the other way round
        farmer = "paddy-{}".format(k)
        actions += [water(farmer, f, round(rng.uniform(0.4, 0.6), 2)) for f in rng.sample(rice, 4)]
        actions += [skip(farmer, f) for f in rng.sample(corn, 2)]
    actions += [water(101, "CornField3", 0.3), water(101, "CornField5", 0.28), skip(101, "RiceField5"),
                {"user_id": 101, "item_id": "SoybeanField1", "action_type": "fertilizing", "label": 1, "parameters": {
                    "type": "nitrogen", "amount": "150_lbs_per_acre", "growth_stage": "V6"}}]
    items = {f: {"name": n, "crop": c} for f, (n, c) in FIELDS.items()}
    print("Sending {} field operations...".format(len(actions)))
    stored = send(client, actions, users={101: {"acres": 50, "region": "Midwest", "tech_adopter": True}}, items=items)
    learn(client, stored)
    print("Fields to tend next, for farmer 101:")
    ranked = show(client, 101, ["CornField4", "RiceField6", "WheatField2"], {f: v[0] for f, v in FIELDS.items()})
    expect(ranked[0] == "CornField4" and ranked.index("CornField4") < ranked.index("RiceField6"),
           "Corn Field #4 comes first: farmer 101 waters corn at low soil moisture, early, by drip, as corn growers "
           "do, and those growers tend the other corn fields next; rice paddies are what they look at and leave.")


if __name__ == "__main__":
    main()
