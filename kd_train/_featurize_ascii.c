/* featurize.py's rules for ASCII answers, compiled: the same float32 rows, bit for bit.
 *
 * featurize.py is the specification (the page runs it in Pyodide); kd_train/featurize_batch.py calls this
 * for the ASCII answers it is given and leaves the rest (and every answer where this was not built) to
 * featurize.py. For an ASCII answer featurize.py's rules reduce to: lower-case A-Z, delete ' and `,
 * tokens = runs of 0-9 a-z; word n-grams = tokens joined by one space; char n-grams = byte n-grams of
 * " " + token + " ". Every float operation that decides a bit of the output is the one featurize.py
 * performs, in its order (distinct n-grams in first-occurrence order, word before char; squares summed
 * in bucket order), in IEEE double, compiled with -ffp-contract=off so no fused multiply-add can round
 * differently. tests/test_featurize_batch.py compares the rows with featurize.py's, bit for bit.
 *
 * Speed: like featurize.py, it remembers the tokens it has seen (across calls, up to a limit) with the
 * ids of their char n-grams, so counting an answer's char n-grams is array work, not hashing. Both are
 * found by their CRC-32 (a token's is its word 1-gram's, a char n-gram's the one it is hashed with).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static uint32_t CRC_TABLE[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        CRC_TABLE[i] = c;
    }
}

/* zlib.crc32(bytes, start) */
static uint32_t crc32_of(uint32_t start, const unsigned char *p, size_t n)
{
    uint32_t r = ~start;
    while (n--)
        r = CRC_TABLE[(r ^ *p++) & 0xFF] ^ (r >> 8);
    return ~r;
}

/* Grow *array to hold at least `need` items of `size` bytes (amortised doubling). */
static int reserve(void **array, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *p = PyMem_Realloc(*array, n * size);
    if (!p)
        return -1;
    *array = p;
    *cap = n;
    return 0;
}

#define RESERVE(array, cap, need) reserve((void **)&(array), &(cap), (need), sizeof(*(array)))

/* Open addressing over uint32 slots holding index + 1 (0 = empty); the caller keeps it at most half full. */
typedef struct {
    uint32_t *slots;
    size_t mask;
} Slots;

static int slots_init(Slots *s, size_t items)
{
    size_t size = 64;
    while (size < 2 * items)
        size <<= 1;
    PyMem_Free(s->slots);
    s->slots = PyMem_Calloc(size, sizeof(uint32_t));
    s->mask = size - 1;
    return s->slots ? 0 : -1;
}

/* ---- the cache: tokens seen so far, and their char n-grams (kept across calls) ---- */

typedef struct {
    uint32_t off, len, hash;   /* bytes at cache.bytes + off; hash places them in an index */
} Key;

typedef struct {
    Key key;                   /* hash: the token as a word 1-gram, zlib.crc32(token, word_start) */
    uint32_t grams, n_grams;   /* its char n-grams at cache.tok_grams + grams, n-major */
} Token;

typedef struct {
    uint32_t id, crc;          /* a char n-gram: its cache id and zlib.crc32(gram, char_start) */
} GramRef;

typedef struct {
    uint32_t stamp, count;     /* stamp == the answer's number: seen in this answer, count times */
} Tally;

typedef struct {
    int clo, chi;
    uint32_t wstart, cstart;
    Token *toks; size_t n_toks, cap_toks; Slots tok_index;
    Key *grams; size_t n_grams, cap_grams; Slots gram_index;   /* char n-grams; hash: zlib.crc32(gram, char_start) */
    unsigned char *bytes; size_t n_bytes, cap_bytes;     /* tokens' and n-grams' bytes */
    GramRef *tok_grams; size_t n_tok_grams, cap_tok_grams;
    unsigned char *scratch; uint32_t *crcs; size_t cap_scratch, cap_crcs;   /* one new token's " token " */
    /* per answer: stamp == answer number marks a token or n-gram as seen in this answer */
    Tally *tok_tally, *gram_tally;
    size_t cap_tok_tally, cap_gram_tally;
    uint32_t answer;
    int ready;
} Cache;

static Cache CACHE;
/* Longer texts are left to the caller, so counts (< 3 x length) and byte offsets in the cache fit in 32 bits. */
#define MAX_CHARS (1 << 22)
static size_t MAX_TOKENS = 1 << 16, MAX_GRAMS = 1 << 19;   /* soft limits: cleared between answers */

static int cache_reset(Cache *c, int clo, int chi, uint32_t wstart, uint32_t cstart)
{
    c->clo = clo; c->chi = chi; c->wstart = wstart; c->cstart = cstart;
    c->n_toks = c->n_grams = c->n_bytes = c->n_tok_grams = 0;
    c->answer = 0;
    if (c->tok_tally)
        memset(c->tok_tally, 0, c->cap_tok_tally * sizeof(Tally));
    if (c->gram_tally)
        memset(c->gram_tally, 0, c->cap_gram_tally * sizeof(Tally));
    c->ready = slots_init(&c->tok_index, MAX_TOKENS) == 0 && slots_init(&c->gram_index, MAX_GRAMS) == 0;
    return c->ready ? 0 : -1;
}

static int index_grow(Slots *s, size_t items, const void *entries, size_t size)
{
    /* rehash when more than half full; every entry starts with its Key */
    if (2 * (items + 1) <= s->mask + 1)
        return 0;
    if (slots_init(s, 2 * items) < 0)
        return -1;
    for (size_t k = 0; k < items; k++) {
        uint32_t h = ((const Key *)((const char *)entries + k * size))->hash;
        size_t i = h & s->mask;
        while (s->slots[i])
            i = (i + 1) & s->mask;
        s->slots[i] = (uint32_t)(k + 1);
    }
    return 0;
}

/* The index of the bytes p[0..len) among `entries` (each starts with a Key; `size` bytes apart), added at
 * the end (its Key set, the rest zero) when new, which *added tells. -1: out of memory. */
static int64_t intern(Cache *c, Slots *index, void **entries, size_t *n, size_t *cap, size_t size,
                      const unsigned char *p, uint32_t len, uint32_t hash, int *added)
{
    size_t i = hash & index->mask;
    for (uint32_t s; (s = index->slots[i]); i = (i + 1) & index->mask) {
        const Key *k = (const Key *)((const char *)*entries + (size_t)(s - 1) * size);
        if (k->hash == hash && k->len == len && memcmp(c->bytes + k->off, p, len) == 0) {
            *added = 0;
            return s - 1;
        }
    }
    Key key = {(uint32_t)c->n_bytes, len, hash};
    if (reserve(entries, cap, *n + 1, size) < 0 || RESERVE(c->bytes, c->cap_bytes, c->n_bytes + len) < 0)
        return -1;
    memcpy(c->bytes + c->n_bytes, p, len);
    c->n_bytes += len;
    char *entry = (char *)*entries + *n * size;
    memset(entry, 0, size);
    memcpy(entry, &key, sizeof key);
    index->slots[i] = (uint32_t)++*n;
    if (index_grow(index, *n, *entries, size) < 0)
        return -1;
    *added = 1;
    return (int64_t)*n - 1;
}

/* A new token's char n-grams (n-major, as featurize.py lists them), each interned on first sight. */
static int token_grams(Cache *c, Token *t, const unsigned char *tok)
{
    size_t len = (size_t)t->key.len + 2, ns = (size_t)(c->chi - c->clo + 1);
    if (RESERVE(c->scratch, c->cap_scratch, len) < 0 || RESERVE(c->crcs, c->cap_crcs, ns * len) < 0)
        return -1;
    unsigned char *s = c->scratch;
    uint32_t *crcs = c->crcs;
    int added;
    t->grams = (uint32_t)c->n_tok_grams;
    t->n_grams = 0;
    for (int n = c->clo; n <= c->chi; n++)
        t->n_grams += len >= (size_t)n ? (uint32_t)(len - n + 1) : 0;
    if (RESERVE(c->tok_grams, c->cap_tok_grams, c->n_tok_grams + t->n_grams) < 0)
        return -1;
    s[0] = ' ';
    memcpy(s + 1, tok, t->key.len);
    s[len - 1] = ' ';
    for (size_t i = 0; i < len; i++) {  /* each start: grow the gram one byte a step */
        uint32_t r = ~c->cstart;
        for (int n = 1; n <= c->chi && i + (size_t)n <= len; n++) {
            r = CRC_TABLE[(r ^ s[i + n - 1]) & 0xFF] ^ (r >> 8);
            if (n >= c->clo)
                crcs[(size_t)(n - c->clo) * len + i] = ~r;
        }
    }
    for (int n = c->clo; n <= c->chi; n++)
        for (size_t i = 0; i + (size_t)n <= len; i++) {
            uint32_t crc = crcs[(size_t)(n - c->clo) * len + i];
            int64_t id = intern(c, &c->gram_index, (void **)&c->grams, &c->n_grams, &c->cap_grams, sizeof(Key), s + i,
                                (uint32_t)n, crc, &added);
            if (id < 0)
                return -1;
            c->tok_grams[c->n_tok_grams++] = (GramRef){(uint32_t)id, crc};
        }
    return 0;
}

/* The id of a token, added with its n-grams on first sight. */
static int64_t token_id(Cache *c, const unsigned char *p, uint32_t len)
{
    int added;
    int64_t id = intern(c, &c->tok_index, (void **)&c->toks, &c->n_toks, &c->cap_toks, sizeof(Token), p, len,
                        crc32_of(c->wstart, p, len), &added);
    if (id >= 0 && added && token_grams(c, &c->toks[id], p) < 0)
        return -1;
    return id;
}

/* A zero-filled tally per id, as long as the cache's table (stamps must start at 0). */
static int tallies_reserve(Tally **tally, size_t *cap, size_t need)
{
    size_t old = *cap;
    if (reserve((void **)tally, cap, need, sizeof(Tally)) < 0)
        return -1;
    memset(*tally + old, 0, (*cap - old) * sizeof(Tally));
    return 0;
}

/* ---- one answer ---- */

/* Bucket sums of one answer, and which buckets were touched (two-level bitmap: walked in bucket order). */
typedef struct {
    double *acc;
    uint64_t *bits, *words;  /* bits: one per bucket; words: one per 64-bit word of bits */
    uint32_t *touched;
    uint32_t n_buckets, mask;  /* mask: n_buckets - 1 when a power of two, else 0 */
} Sums;

/* featurize.py's _add for one distinct n-gram: sign * weight * sqrt(count) into bucket crc % n_buckets. */
static inline void sums_add(Sums *s, uint32_t crc, int64_t count, double weight)
{
    uint32_t b = s->mask ? crc & s->mask : crc % s->n_buckets;
    double v = count == 1 ? weight : weight * sqrt((double)count);
    s->acc[b] += (crc & 0x80000000u) ? -v : v;
    s->bits[b >> 6] |= (uint64_t)1 << (b & 63);
    s->words[b >> 12] |= (uint64_t)1 << ((b >> 6) & 63);
}

/* L2-normalise into row (float32, zeroed by the caller) and reset the sums for the next answer. */
static void sums_flush(Sums *s, float *row)
{
    size_t n = 0;
    size_t n_words = ((size_t)s->n_buckets + 4095) >> 12;
    for (size_t w = 0; w < n_words; w++) {
        for (uint64_t x = s->words[w]; x; x &= x - 1) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(x);
            for (uint64_t y = s->bits[i]; y; y &= y - 1)
                s->touched[n++] = (uint32_t)(i * 64 + (size_t)__builtin_ctzll(y));
            s->bits[i] = 0;
        }
        s->words[w] = 0;
    }
    double norm2 = 0.0;
    for (size_t k = 0; k < n; k++) {
        double v = s->acc[s->touched[k]];
        norm2 += v * v;
    }
    double norm = sqrt(norm2);
    for (size_t k = 0; k < n; k++) {
        uint32_t b = s->touched[k];
        double v = s->acc[b];
        if (norm2 != 0.0 && v != 0.0)
            row[b] = (float)(v / norm);
        s->acc[b] = 0.0;
    }
}

/* An answer's word n-grams (n >= 2), counted by their token ids in first-occurrence order. */
typedef struct {
    uint32_t first, n, hash, crc, slot;   /* ids at tok_id + first */
    int64_t count;
} WordGram;

typedef struct {
    unsigned char *text;      /* normalised: tokens joined by one space */
    size_t *tok_start, *tok_len;
    uint32_t *tok_id;         /* cache ids */
    uint32_t *tok_order;      /* distinct tokens, first-occurrence order */
    GramRef *gram_order;      /* distinct char n-grams, first-occurrence order */
    WordGram *words;
    size_t cap_text, cap_start, cap_len, cap_id, cap_tok_order, cap_gram_order, cap_words;
    Slots word_index;
    size_t word_index_for;
} Answer;

static void answer_free(Answer *a)
{
    PyMem_Free(a->text); PyMem_Free(a->tok_start); PyMem_Free(a->tok_len); PyMem_Free(a->tok_id);
    PyMem_Free(a->tok_order); PyMem_Free(a->gram_order); PyMem_Free(a->words); PyMem_Free(a->word_index.slots);
}

/* featurize.py's tokens of an ASCII text, joined by one space into a->text; returns their count. */
static size_t tokenize(const unsigned char *in, size_t len, Answer *a)
{
    size_t n = 0, pos = 0;
    int inside = 0;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = in[k];
        if (c == '\'' || c == '`')
            continue;
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) {
            if (!inside) {
                if (n)
                    a->text[pos++] = ' ';
                a->tok_start[n++] = pos;
                inside = 1;
            }
            a->text[pos++] = c;
        } else if (inside) {
            a->tok_len[n - 1] = pos - a->tok_start[n - 1];
            inside = 0;
        }
    }
    if (inside)
        a->tok_len[n - 1] = pos - a->tok_start[n - 1];
    return n;
}

typedef struct {
    int wlo, whi, clo, chi;
    double ww, cw;
    uint32_t wstart, cstart;
} Config;

static uint32_t ids_hash(const uint32_t *ids, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t k = 0; k < n; k++)
        h = (h ^ ids[k]) * 0x9E3779B1u;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    return h ^ (h >> 13);
}

/* Word n-grams for n >= 2 into the sums: distinct ones in first-occurrence order, n-major. */
static int long_word_grams(const Config *cf, Answer *a, size_t n_tok, Sums *s)
{
    int lo = cf->wlo > 2 ? cf->wlo : 2;
    if (cf->whi < lo || n_tok < (size_t)lo)
        return 0;
    size_t most = n_tok * (size_t)(cf->whi - lo + 1);
    if (RESERVE(a->words, a->cap_words, most) < 0)
        return -1;
    if (most > a->word_index_for) {
        if (slots_init(&a->word_index, most) < 0)
            return -1;
        a->word_index_for = most;
    }
    size_t n_words = 0, mask = a->word_index.mask;
    uint32_t *slots = a->word_index.slots;
    for (int n = lo; n <= cf->whi; n++)
        for (size_t i = 0; i + (size_t)n <= n_tok; i++) {
            const uint32_t *ids = a->tok_id + i;
            uint32_t h = ids_hash(ids, (uint32_t)n);
            size_t j = h & mask;
            uint32_t slot;
            for (; (slot = slots[j]); j = (j + 1) & mask) {
                WordGram *w = &a->words[slot - 1];
                if (w->hash == h && w->n == (uint32_t)n && memcmp(a->tok_id + w->first, ids, (size_t)n * 4) == 0)
                    break;
            }
            if (slot) {
                a->words[slot - 1].count++;
                continue;
            }
            const unsigned char *p = a->text + a->tok_start[i];
            size_t bytes = a->tok_start[i + n - 1] + a->tok_len[i + n - 1] - a->tok_start[i];
            a->words[n_words] = (WordGram){(uint32_t)i, (uint32_t)n, h, crc32_of(cf->wstart, p, bytes),
                                           (uint32_t)j, 1};
            slots[j] = (uint32_t)++n_words;
        }
    for (size_t k = 0; k < n_words; k++) {
        sums_add(s, a->words[k].crc, a->words[k].count, cf->ww);
        slots[a->words[k].slot] = 0;
    }
    return 0;
}

static int answer_reserve(Answer *a, size_t len)
{
    return RESERVE(a->text, a->cap_text, len + 1) < 0 || RESERVE(a->tok_start, a->cap_start, len + 1) < 0
           || RESERVE(a->tok_len, a->cap_len, len + 1) < 0 || RESERVE(a->tok_id, a->cap_id, len + 1) < 0
           || RESERVE(a->tok_order, a->cap_tok_order, len + 1) < 0 ? -1 : 0;
}

static int featurize_one(const Config *cf, Cache *c, const unsigned char *in, size_t len, Answer *a, Sums *s,
                         float *row)
{
    if (answer_reserve(a, len) < 0)
        return -1;
    size_t n_tok = tokenize(in, len, a);
    if (!n_tok)
        return 0;
    size_t ns = (size_t)(cf->chi - cf->clo + 1), most_grams = (len + 2 * n_tok) * ns;
    if ((c->answer == UINT32_MAX   /* the next stamp would wrap: forget every stamp */
         || (c->n_toks && (c->n_toks + n_tok > MAX_TOKENS || c->n_grams + most_grams > MAX_GRAMS)))
            && cache_reset(c, cf->clo, cf->chi, cf->wstart, cf->cstart) < 0)
        return -1;
    c->answer++;
    for (size_t i = 0; i < n_tok; i++) {
        int64_t id = token_id(c, a->text + a->tok_start[i], (uint32_t)a->tok_len[i]);
        if (id < 0)
            return -1;
        a->tok_id[i] = (uint32_t)id;
    }
    if (tallies_reserve(&c->tok_tally, &c->cap_tok_tally, c->n_toks) < 0
            || tallies_reserve(&c->gram_tally, &c->cap_gram_tally, c->n_grams) < 0)
        return -1;
    size_t n_distinct = 0, n_grams = 0;
    for (size_t i = 0; i < n_tok; i++) {
        uint32_t id = a->tok_id[i];
        Tally *t = &c->tok_tally[id];
        if (t->stamp != c->answer) {
            *t = (Tally){c->answer, 1};
            a->tok_order[n_distinct++] = id;
        } else {
            t->count++;
        }
    }
    if (cf->ww > 0.0) {
        if (cf->wlo == 1)
            for (size_t d = 0; d < n_distinct; d++)
                sums_add(s, c->toks[a->tok_order[d]].key.hash, c->tok_tally[a->tok_order[d]].count, cf->ww);
        if (long_word_grams(cf, a, n_tok, s) < 0)
            return -1;
    }
    if (cf->cw > 0.0) {
        size_t most = 0;
        for (size_t d = 0; d < n_distinct; d++)
            most += c->toks[a->tok_order[d]].n_grams;
        if (RESERVE(a->gram_order, a->cap_gram_order, most) < 0)
            return -1;
        for (size_t d = 0; d < n_distinct; d++) {   /* featurize.py's Counter over g * count, token by token */
            const Token *t = &c->toks[a->tok_order[d]];
            uint32_t count = c->tok_tally[a->tok_order[d]].count;
            const GramRef *refs = c->tok_grams + t->grams;
            for (uint32_t k = 0; k < t->n_grams; k++) {
                Tally *g = &c->gram_tally[refs[k].id];
                if (g->stamp != c->answer) {
                    *g = (Tally){c->answer, count};
                    a->gram_order[n_grams++] = refs[k];
                } else {
                    g->count += count;
                }
            }
        }
        for (size_t k = 0; k < n_grams; k++)
            sums_add(s, a->gram_order[k].crc, c->gram_tally[a->gram_order[k].id].count, cf->cw);
    }
    sums_flush(s, row);
    return 0;
}

static PyObject *set_cache_limits(PyObject *self, PyObject *args)
{
    (void)self;
    Py_ssize_t tokens, grams;
    if (!PyArg_ParseTuple(args, "nn", &tokens, &grams))
        return NULL;
    if (tokens < 1 || grams < 1) {
        PyErr_SetString(PyExc_ValueError, "set_cache_limits: both limits must be >= 1");
        return NULL;
    }
    MAX_TOKENS = (size_t)tokens;
    MAX_GRAMS = (size_t)grams;
    CACHE.ready = 0;
    Py_RETURN_NONE;
}

/* ---- the Python function ---- */

static PyObject *featurize_ascii(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *texts, *out;
    unsigned int n_buckets;
    unsigned long wstart, cstart;
    Config cf;
    if (!PyArg_ParseTuple(args, "OOIiiiiddkk", &texts, &out, &n_buckets, &cf.wlo, &cf.whi, &cf.clo, &cf.chi,
                          &cf.ww, &cf.cw, &wstart, &cstart))
        return NULL;
    cf.wstart = (uint32_t)wstart;
    cf.cstart = (uint32_t)cstart;
    if (n_buckets < 1 || n_buckets > (1u << 24) || cf.wlo < 1 || cf.wlo > cf.whi || cf.whi > 6
            || cf.clo < 1 || cf.clo > cf.chi || cf.chi > 10) {
        PyErr_SetString(PyExc_ValueError, "featurize_ascii: invalid config (validate it with featurize.py first)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(texts, "featurize_ascii: texts must be a sequence of str");
    if (!seq)
        return NULL;
    Py_ssize_t n_texts = PySequence_Fast_GET_SIZE(seq);
    Py_buffer view;
    if (PyObject_GetBuffer(out, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject *rest = NULL;
    Answer a = {0};
    size_t n_words = ((size_t)n_buckets + 4095) >> 12;
    Sums sums = {0};
    if (view.itemsize != 4 || !view.format || strcmp(view.format, "f") != 0
            || view.len != (Py_ssize_t)(n_texts * (Py_ssize_t)n_buckets * 4)) {
        PyErr_SetString(PyExc_ValueError, "featurize_ascii: out must be a zeroed C-contiguous float32 array "
                        "of shape (len(texts), n_buckets)");
        goto done;
    }
    sums = (Sums){PyMem_Calloc(n_buckets, sizeof(double)), PyMem_Calloc(n_words * 64, sizeof(uint64_t)),
                  PyMem_Calloc(n_words, sizeof(uint64_t)), PyMem_Malloc((size_t)n_buckets * sizeof(uint32_t)),
                  n_buckets, (n_buckets & (n_buckets - 1)) == 0 ? n_buckets - 1 : 0};
    rest = PyList_New(0);
    int failed = !rest || !sums.acc || !sums.bits || !sums.words || !sums.touched;
    if (!failed && (!CACHE.ready || CACHE.clo != cf.clo || CACHE.chi != cf.chi || CACHE.wstart != cf.wstart
                    || CACHE.cstart != cf.cstart))
        failed = cache_reset(&CACHE, cf.clo, cf.chi, cf.wstart, cf.cstart) < 0;
    for (Py_ssize_t k = 0; k < n_texts && !failed; k++) {
        PyObject *text = PySequence_Fast_GET_ITEM(seq, k);
        int ascii = PyUnicode_Check(text);
#if PY_VERSION_HEX < 0x030C0000
        if (ascii && PyUnicode_READY(text) < 0) {
            failed = 1;
            break;
        }
#endif
        if (!(ascii && PyUnicode_IS_ASCII(text) && PyUnicode_GET_LENGTH(text) <= MAX_CHARS)) {
            PyObject *index = PyLong_FromSsize_t(k);
            failed = !index || PyList_Append(rest, index) < 0;
            Py_XDECREF(index);
            continue;
        }
        float *row = (float *)view.buf + (size_t)k * n_buckets;
        if (featurize_one(&cf, &CACHE, PyUnicode_DATA(text), (size_t)PyUnicode_GET_LENGTH(text), &a, &sums,
                          row) < 0)
            failed = 1;
    }
    if (failed) {
        CACHE.ready = 0;   /* an allocation failed half-way: start the cache afresh next time */
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        Py_CLEAR(rest);
    }
done:
    answer_free(&a);
    PyMem_Free(sums.acc); PyMem_Free(sums.bits); PyMem_Free(sums.words); PyMem_Free(sums.touched);
    PyBuffer_Release(&view);
    Py_DECREF(seq);
    return rest;
}

static PyMethodDef METHODS[] = {
    {"featurize_ascii", featurize_ascii, METH_VARARGS,
     "featurize_ascii(texts, out, n_buckets, wlo, whi, clo, chi, word_weight, char_weight, word_start, "
     "char_start) -> list of the rows it left alone\n\n"
     "Write featurize.py's vector of every ASCII str in texts into its row of out (a zeroed C-contiguous "
     "float32 array, len(texts) x n_buckets). word_start/char_start are zlib.crc32(prefix, seed). Returns "
     "the indices of the texts that are not ASCII str (or longer than 2**22 characters): their rows are untouched."},
    {"set_cache_limits", set_cache_limits, METH_VARARGS,
     "set_cache_limits(tokens, grams): how many tokens and char n-grams to remember before starting afresh "
     "(default 65536 and 524288; the output never depends on them)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_featurize_ascii", NULL, -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__featurize_ascii(void)
{
    crc_init();
    return PyModule_Create(&MODULE);
}
