"""The Python half of the page's worker (worker.js): loads featurize.py, detect.py and wordpiece.py, and
makes, per scorer, the function that turns answers into feature vectors (or, for a sequence scorer, token
ids; for a transformer scorer, the teacher's WordPiece ids) and detector flags in one call.

It runs in Pyodide. In a bundle with a start-up snapshot it ran at build time, inside the snapshot
(web/make-snapshot.mjs, which records the sha256 of the Python files in ``built_from`` for worker.js
to check against manifest.json); in a bundle without one, worker.js runs it when the page starts.
Either way worker.js then calls ``scorer_for``.
"""

import array
import importlib.util
import json
import sys


def load(name):
    spec = importlib.util.spec_from_file_location(name, "/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module               # detect.py imports featurize by this name
    spec.loader.exec_module(module)
    return module


featurize_module = load("featurize")
detect_module = load("detect")
wordpiece_module = load("wordpiece")


def scorer_for(config, profile_json, vocab_text=None):
    config = dict(config)                    # a copy made once per scorer, not once per call
    profile = json.loads(profile_json)       # None for a scorer written before the detectors
    flags = detect_module.flags
    kind = config.get("kind")
    if kind == "tokens":                     # a sequence scorer: token ids, no values
        token_ids = featurize_module.token_ids

        def features(text):
            return token_ids(text, config), ()
    elif kind == "wordpiece":                # a transformer scorer: the teacher's ids, no values
        config["specials"] = list(config["specials"])
        vocab = wordpiece_module.read_vocab(str(vocab_text))
        encode = wordpiece_module.encode

        def features(text):
            return encode(text, vocab, config), ()
    else:                                    # a bag scorer: featurize.py's sparse vector
        featurize = featurize_module.featurize

        def features(text):
            pairs = featurize(text, config)
            return [bucket for bucket, _ in pairs], [value for _, value in pairs]
    reasons = json.dumps({code: detect_module.reason(code, profile) for code in detect_module.REASONS})

    def run(texts):
        offsets, idx, val, found = array.array("i", [0]), array.array("i"), array.array("d"), []
        for text in texts:
            text = str(text)
            codes = flags(text, profile)
            found.append(codes)
            if codes != ["refused"]:         # an over-long answer is not featurized
                ids, values = features(text)
                idx.extend(ids)
                val.extend(values)
            offsets.append(len(idx))
        return offsets.tobytes(), idx.tobytes(), val.tobytes(), json.dumps(found)

    def check(texts):                        # the flags alone (what the detectors cost, measured)
        return json.dumps([flags(str(text), profile) for text in texts])

    return run, reasons, check
