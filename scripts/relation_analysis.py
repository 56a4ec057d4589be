"""Why is relation accuracy low? Evidence from the references, the metric and stored captions.

Prints, from stored data only (nothing is trained or generated):

1. **The references** (training split): how many true relations an image
   has, how often a pair of groups is related along both axes (a diagonal
   pair), and which relation words the references use. The generator states
   *one* relation, drawn uniformly from *every* true ``(subject, relation,
   object)`` triple (both directions of each pair, both axes of a diagonal
   pair, any pair): the image -> relation mapping is one-to-many.
2. **The first word of the relation phrase**: ``to the left of`` and ``to the
   right of`` share the word ``to``; ``above`` and ``below`` do not. Where the
   references split their relation between the axes, the next-word
   distribution a captioner learns puts the horizontal mass on one word,
   which greedy decoding then always picks.
3. **The metric**: every reference caption scores relation accuracy 1.0 (the
   metric judges the right pair and axis), and how many scored relations name
   objects that exist exactly.
4. **The stored captions** (``results/<profile>/captioners`` and ``decoding``):
   the relation words they use, each verdict kind (holds, opposite direction,
   other axis, none, a group related to itself), the share of horizontal
   claims made about images where no two groups are horizontally apart, and
   direction accuracy on pairs that are apart along the stated axis.

Usage::

    PTLIB_PROFILE=cpu python scripts/relation_analysis.py [--profile cpu]
    # section 1-2 for a freshly generated dataset with the proposed fix
    python scripts/relation_analysis.py --relation-rule dominant --n-images 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ptlib import course  # noqa: E402
from ptlib.data.grammar import (  # noqa: E402
    RELATION_PHRASES,
    RELATIONS,
    dominant_relations,
    relation_holds,
    true_relations,
)
from ptlib.data.shapes import (  # noqa: E402
    ShapesConfig,
    ensure_shapes_dataset,
    generate_shapes_dataset,
    shapes_paths,
)
from ptlib.metrics.correctness import (  # noqa: E402
    RELATION_VERDICT_KINDS,
    SceneTruth,
    judge_caption,
    load_ground_truth,
    score_correctness,
)

HORIZONTAL = ("left_of", "right_of")
VERTICAL = ("above", "below")


def pct(part: float, whole: float) -> str:
    """``part/whole (xx.x%)``."""
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else f"{part}/0"


def dataset_root(section: dict) -> Path:
    """The generated shapes dataset a ``data`` config section names."""
    config = ShapesConfig.from_section(section)
    profile = course.Profile(name="analysis", description="relation analysis",
                             seed=config.seed, settings={"data": dict(section)})
    return ensure_shapes_dataset(profile)


def pair_facts(truth: SceneTruth) -> tuple[int, int, int]:
    """``(ordered true triples, related unordered pairs, diagonal pairs)`` of one image."""
    centres, side = truth.group_centres, truth.image_side
    triples = related = diagonal = 0
    for a in range(len(centres)):
        for b in range(len(centres)):
            if a == b:
                continue
            holds = [r for r in RELATIONS if relation_holds(r, centres[a], centres[b], side)]
            triples += len(holds)
            if a < b and holds:
                related += 1
                diagonal += any(r in HORIZONTAL for r in holds) and any(
                    r in VERTICAL for r in holds)
    return triples, related, diagonal


def any_relation(truth: SceneTruth, relations: tuple[str, ...]) -> bool:
    """Whether two different groups of the image are apart along one of ``relations``."""
    centres, side = truth.group_centres, truth.image_side
    return any(relation_holds(r, centres[a], centres[b], side)
               for a in range(len(centres)) for b in range(len(centres)) if a != b
               for r in relations)


def subject_determined(truth: dict[int, SceneTruth], rule: str) -> tuple[int, int]:
    """``(determined, total)`` over (image, subject group) pairs that may be stated.

    ``determined`` counts the pairs for which every stateable triple with that subject
    uses the same relation word, so that once a caption has named its subject the
    relation word follows from the image.
    """
    find = dominant_relations if rule == "dominant" else true_relations
    determined = total = 0
    for scene in truth.values():
        words: dict[int, set[str]] = {}
        for subject, relation, _ in find(scene.group_centres, scene.image_side):
            words.setdefault(subject, set()).add(relation)
        total += len(words)
        determined += sum(len(w) == 1 for w in words.values())
    return determined, total


def references_section(root: Path, rule: str = "any") -> None:
    truth = load_ground_truth(shapes_paths(root, "train")[2])
    annotations = json.loads(shapes_paths(root, "train")[1].read_text())["annotations"]
    multi = {i: t for i, t in truth.items() if len(t.groups) > 1}
    facts = [pair_facts(t) for t in multi.values()]
    triples = [f[0] for f in facts]
    pairs = sum(f[1] for f in facts)
    diagonal = sum(f[2] for f in facts)
    print("== 1. The references (training split) ==")
    print(f"images with two or more groups: {pct(len(multi), len(truth))}")
    print(f"true (subject, relation, object) triples per such image: mean "
          f"{sum(triples) / len(triples):.2f}, min {min(triples)}, max {max(triples)}")
    print(f"images with more than one stateable triple: "
          f"{pct(sum(n > 1 for n in triples), len(triples))} "
          "(every related pair gives at least two: 'A left of B' and 'B right of A')")
    print(f"related group pairs apart along both axes (diagonal): {pct(diagonal, pairs)}")
    determined, total = subject_determined(multi, rule)
    print(f"(image, subject) pairs whose relation word follows from the image once the "
          f"subject is named (relation_rule={rule!r}): {pct(determined, total)}")
    stated = Counter(a["relation"]["relation"] for a in annotations if a["relation"])
    n_stated = sum(stated.values())
    print("relation words in the references: " + ", ".join(
        f"{RELATION_PHRASES[r]!r} {pct(stated[r], n_stated)}" for r in RELATIONS))
    per_image: dict[int, set] = {}
    for a in annotations:
        if a["relation"]:
            rel = a["relation"]
            objects = a["objects"]
            fact = (tuple(objects[rel["subject"]].values()), rel["relation"],
                    tuple(objects[rel["object"]].values()))
            per_image.setdefault(a["image_id"], set()).add(fact)
    distinct = [len(s) for s in per_image.values()]
    print(f"distinct relation statements among an image's 5 references: mean "
          f"{sum(distinct) / len(distinct):.2f}; all 5 agree in "
          f"{pct(sum(n == 1 for n in distinct), len(distinct))} of images")
    print()
    print("== 2. The first word of the relation phrase ==")
    first = Counter(RELATION_PHRASES[r].split()[0] for r in stated.elements())
    print("after '<subject> is/are', the references continue with: " + ", ".join(
        f"{word!r} {pct(n, n_stated)}" for word, n in first.most_common()))
    print("'to' carries both horizontal relations: a captioner that cannot tell which"
          " relation an image's references will pick learns about this split, and greedy"
          " decoding picks 'to' (then left or right) every time; 'above'/'below' need"
          " more than half of the next-word mass to be chosen.")
    print()


def metric_section(root: Path) -> None:
    truth = load_ground_truth(shapes_paths(root, "test")[2])
    annotations = json.loads(shapes_paths(root, "test")[1].read_text())["annotations"]
    by_image: dict[int, list[str]] = {}
    for a in annotations:
        by_image.setdefault(a["image_id"], []).append(a["caption"])
    print("== 3. The metric ==")
    for k in range(5):
        result = score_correctness({i: refs[k] for i, refs in by_image.items()}, truth)
        print(f"test reference #{k}: relation accuracy {result['relation_accuracy']:.3f} "
              f"({result['n_relation_scored']} scored), strict exact set "
              f"{result['exact_set_accuracy']:.3f}")
    print()


def caption_section(profile: str) -> None:
    results = REPO / "results" / profile
    records = []
    for path in sorted((results / "captioners").glob("*/*.json")):
        record = json.loads(path.read_text())
        for split, entry in record["result"].get("evaluation", {}).items():
            if split == "test" and "captions" in entry:
                records.append((f"{path.parent.name} (greedy)", record["config"]["config"],
                                entry["captions"]))
    for path in sorted((results / "decoding").glob("*/*.json")):
        record = json.loads(path.read_text())
        if "captions" in record["result"]:
            records.append((f"{path.parent.name} (beam {record['config']['beam_size']})",
                            record["config"]["config"], record["result"]["captions"]))
    print("== 4. The stored captions (test split) ==")
    for name, config, captions in records:
        truth = load_ground_truth(shapes_paths(dataset_root(config["data"]), "test")[2])
        judged = {int(i): judge_caption(c, truth[int(i)]) for i, c in captions.items()}
        asserted = [j for j in judged.values() if j.relation is not None]
        words = Counter(j.relation.relation for j in asserted)
        scored = [j for j in asserted if j.relation_ok is not None]
        kinds = Counter(j.relation_kind for j in scored)
        horizontal = [i for i, j in judged.items()
                      if j.relation is not None and j.relation.relation in HORIZONTAL]
        no_horizontal = sum(not any_relation(truth[i], HORIZONTAL) for i in horizontal)
        on_axis = kinds["holds"] + kinds["opposite"]
        print(f"-- {name}: {len(asserted)} relations asserted, {len(scored)} scored")
        print("   words: " + ", ".join(f"{RELATION_PHRASES[r]!r} {words[r]}" for r in RELATIONS))
        print("   verdicts: " + ", ".join(f"{k} {pct(kinds[k], len(scored))}"
                                          for k in RELATION_VERDICT_KINDS))
        print(f"   horizontal claims on images where no two groups are horizontally apart: "
              f"{pct(no_horizontal, len(horizontal))}")
        print(f"   direction right when the pair is apart along the stated axis: "
              f"{pct(kinds['holds'], on_axis)}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="results/<profile> (default: PTLIB_PROFILE)")
    parser.add_argument("--relation-rule", choices=("any", "dominant"), default=None,
                        help="generate N training images with this rule (in a temporary "
                             "folder) and print sections 1-2 for them only")
    parser.add_argument("--n-images", type=int, default=1000,
                        help="training images to generate with --relation-rule")
    args = parser.parse_args(argv)
    profile = course.get_profile(args.profile)
    section = dict(profile.section("data"))
    if section.get("dataset", "shapes") != "shapes":
        parser.error(f"profile {profile.name!r} does not use the shapes dataset")
    if args.relation_rule is not None:
        base = ShapesConfig.from_section(section)
        config = ShapesConfig(**{**asdict(base), "n_train": args.n_images, "n_val": 0,
                                 "n_test": 0, "n_compositional": 0,
                                 "relation_rule": args.relation_rule})
        with tempfile.TemporaryDirectory() as tmp:
            generate_shapes_dataset(tmp, config)
            print(f"relation_rule={args.relation_rule!r}, {args.n_images} generated images")
            references_section(Path(tmp), args.relation_rule)
        return 0
    root = dataset_root(section)
    references_section(root)
    metric_section(root)
    caption_section(profile.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
