"""The shapes world: a deterministic synthetic multimodal world (coloured shapes on a grid) generated offline.

A scene is 1-4 objects, each a shape, a colour and a size in its own cell of a 3x3 grid. The vocabulary is made of
near neighbours (red/orange/pink, blue/cyan/purple; circle/hexagon, square/diamond), so one attribute off is hard
to see. From scenes the generator writes:

- training pairs in the MMEB-train layout (text->image, image->text, VQA, classification, grounding), where partial
  captions ("an image with a red circle above a blue triangle") are true of several images: real false negatives;
  images come in families of one-attribute-off variants: real hard negatives;
- MMEB-eval sets (retrieval both ways, classification, VQA, grounding), each query with ``candidates`` candidates
  dense in one-attribute-off items, every distractor checked false; ``heldout_*`` sets whose gold involves
  (colour, shape) combinations that training never shows;
- a SugarCrepe-style compositional set, and the world's truth (``truth/``) so any (query, candidate) pair of the
  world can be judged yes/no ([`ShapesTruth`], [`satisfies`]).

Layout of ``out_dir``::

    world.json                  config, vocabulary, held-out combos, eval sets, statistics
    train.jsonl                 MMEB-train pairs (qry, qry_image_path, pos_text, pos_image_path); paths relative to
                                out_dir, like every image path in these files
    corpus.jsonl                extra candidates (text, image) that no pair uses: one-attribute-off distractors
    eval/<name>.jsonl           MMEB-eval sets (qry_text, qry_img_path, tgt_text, tgt_img_path), gold at index 0
    compositional.jsonl         image, caption, negative_caption, subset
    gallery.jsonl               image, caption: every in-distribution eval image with its full caption
    images/{train,distractors,eval,heldout,crops}/*.png
    meta/train.jsonl, meta/eval/<name>.jsonl   per row (aligned): task, scene image, query meaning, hard negatives
    truth/scenes.jsonl, truth/crops.jsonl, truth/texts.jsonl   what every image shows and every text means

Modules: `config` (vocabulary, prompts, [`ShapesWorldConfig`]), `scene` (the world model, its truth predicates and
texts), `sampling` (random scenes, variants, captions, questions), `render` (drawing), `world` (the world being
built), `pairs` (training pairs), `eval_sets`, `compositional`, `statistics`, `generate` ([`generate_shapes_world`]),
`truth` ([`ShapesTruth`]) and `layout` (the files on disk and their readers).

Example:

```python
>>> from unime_hf.data.shapes import ShapesWorldConfig, generate_shapes_world, load_shapes_train
>>> stats = generate_shapes_world("runs/shapes", ShapesWorldConfig.preset("small", seed=0))
>>> data = load_shapes_train("runs/shapes")  # DatasetDict(train=pairs, corpus=positives + distractors)
```
"""

from unime_hf.data.shapes.config import (
    ATTRIBUTES,
    BACKGROUND,
    CELL_NAMES,
    CLS_QUERY,
    COLOURS,
    CROP_CANDIDATE,
    EVAL_NAMES,
    GROUND_QUERY,
    I2T_QUERY,
    IMAGE_CANDIDATE,
    META_TASKS,
    NUMBER_WORDS,
    OPPOSITE,
    PRESETS,
    RELATION_PHRASES,
    RELATIONS,
    SHAPES,
    SIZES,
    T2I_QUERY,
    TASKS,
    VQA_QUERY,
    ShapesWorldConfig,
)
from unime_hf.data.shapes.generate import (
    generate_shapes_world,
)
from unime_hf.data.shapes.layout import (
    WORLD_FILES,
    WORLD_FOLDERS,
    load_shapes_compositional,
    load_shapes_eval,
    load_shapes_gallery,
    load_shapes_train,
)
from unime_hf.data.shapes.render import (
    render_crop,
    render_scene,
)
from unime_hf.data.shapes.sampling import (
    exact_spec,
    is_one_off,
    one_off_variants,
    sample_partial_spec,
    sample_question,
    sample_scene,
    spec_perturbations,
    unique_refs,
)
from unime_hf.data.shapes.scene import (
    ObjectSpec,
    QuerySpec,
    Question,
    Scene,
    ShapeObject,
    answer,
    caption_text,
    class_label,
    describe,
    largest,
    question_text,
    referring_expression,
    relation_holds,
    resolve,
    satisfies,
)
from unime_hf.data.shapes.truth import (
    ShapesTruth,
    world_truth,
)
from unime_hf.data.shapes.world import (
    Candidate,
)

__all__ = [
    "answer",
    "ATTRIBUTES",
    "BACKGROUND",
    "Candidate",
    "caption_text",
    "CELL_NAMES",
    "class_label",
    "CLS_QUERY",
    "COLOURS",
    "CROP_CANDIDATE",
    "describe",
    "EVAL_NAMES",
    "exact_spec",
    "generate_shapes_world",
    "GROUND_QUERY",
    "I2T_QUERY",
    "IMAGE_CANDIDATE",
    "is_one_off",
    "largest",
    "load_shapes_compositional",
    "load_shapes_eval",
    "load_shapes_gallery",
    "load_shapes_train",
    "META_TASKS",
    "NUMBER_WORDS",
    "ObjectSpec",
    "one_off_variants",
    "OPPOSITE",
    "QuerySpec",
    "Question",
    "question_text",
    "referring_expression",
    "relation_holds",
    "RELATION_PHRASES",
    "RELATIONS",
    "render_crop",
    "render_scene",
    "resolve",
    "sample_partial_spec",
    "sample_question",
    "sample_scene",
    "satisfies",
    "Scene",
    "ShapeObject",
    "SHAPES",
    "ShapesTruth",
    "PRESETS",
    "ShapesWorldConfig",
    "SIZES",
    "spec_perturbations",
    "T2I_QUERY",
    "TASKS",
    "unique_refs",
    "VQA_QUERY",
    "WORLD_FILES",
    "WORLD_FOLDERS",
    "world_truth",
]
