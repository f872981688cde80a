"""Weight-sync bucketing (pure, sub-second); the broadcast itself is tested on real actors in test_actors.py."""

from ray_effreason.actors.weight_sync import ParamSpec, buckets


def test_buckets_keep_order_split_by_size_and_dtype():
    specs = [ParamSpec("a", (4, 4), "float32"), ParamSpec("b", (8,), "float32"),  # 64 + 32 bytes
             ParamSpec("c", (16,), "float32"), ParamSpec("d", (2,), "bfloat16"), ParamSpec("e", (2,), "bfloat16")]
    grouped = buckets(specs, bucket_bytes=100)
    assert [[spec.name for spec in bucket] for bucket in grouped] == [["a", "b"], ["c"], ["d", "e"]]
    assert [spec for bucket in grouped for spec in bucket] == specs  # nothing lost, order kept


def test_a_tensor_larger_than_a_bucket_gets_its_own():
    specs = [ParamSpec("small", (2,), "float32"), ParamSpec("huge", (1000,), "float32"),
             ParamSpec("tail", (2,), "float32")]
    assert [[spec.name for spec in bucket] for bucket in buckets(specs, bucket_bytes=64)] == [
        ["small"], ["huge"], ["tail"]]
