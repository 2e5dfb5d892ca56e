"""Actions -> model feature rows: one code path for training and serving (no train/serve skew).

A lineage's features are a `FeatureSpec`, derived once from the data when a full training starts
the lineage and then fixed: incremental updates and serving use the spec stored with the version.

  base     user_id, item_id, action_type, hour (of day, UTC), dow (day of week, Monday = 0)
  param    action `parameters`, flattened: nested objects -> dotted names ("device.os")
  user     the user's profile fields (PUT /users/{id}), flattened the same way
  item     the item's profile fields (PUT /items/{id})

Each non-base field becomes one feature by the kind of its values:
  numbers           RawFeature, normalised with the mean/std of the data that derived the spec
                    (clipped to +-5 standard deviations; missing -> 0, the mean)
  strings, booleans IdFeature, hashed into buckets inside the graph (missing -> "")
  lists             TagFeature, one tag per element (missing -> no tags)

A field becomes a feature when enough of the data carries it (FEATURE_MIN_SUPPORT), up to
MAX_PARAMETER_FEATURES parameters and MAX_PROFILE_FEATURES per profile kind (the most frequent).
Parameters a label rule reads (e.g. rating `stars`) never become features: they are the label.
Keys that appear after a lineage started are stored with the action and ignored by that lineage;
the next full retrain (a new lineage) takes them in.

Every row is built by `encode` from an `Example` (user, item, Context, label), for training rows
and for serving requests alike; the CSV layout and the SavedModel inputs follow the spec's order.
"""
