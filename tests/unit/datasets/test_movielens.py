from easyrec_online.datasets.movielens import load_movielens_100k, split_by_time
from easyrec_online.ingest.actions import ActionIn


def test_the_whole_data_set_as_actions_and_profiles():
    data = load_movielens_100k()
    assert len(data.actions) == 100000 and len(data.users) == 943 and len(data.items) == 1682
    first = data.actions[0]
    ActionIn.model_validate(first)  # every action is a valid /online/data/add sample
    assert first["action_type"] == "rating" and first["label"] == int(first["parameters"]["stars"] >= 4)
    assert 0.5 < sum(a["label"] for a in data.actions) / len(data.actions) < 0.6
    assert len({a["event_id"] for a in data.actions}) == 100000
    assert data.users[1]["occupation"] == "technician" and "Animation" in data.items[1]["genres"]


def test_a_small_subset_split_by_time():
    data = load_movielens_100k(max_users=20)
    assert set(data.users) == set(range(1, 21)) and {a["user_id"] for a in data.actions} <= set(range(1, 21))
    past, future = split_by_time(data.actions, 0.8)
    assert len(past) == int(len(data.actions) * 0.8) and past[-1]["timestamp"] <= future[0]["timestamp"]
