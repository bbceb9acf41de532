/* Native versions of hot loops, each the twin of a pure-Python reference that stays the
 * specification and the fallback (see each function's docstring). Built by setup.py when a
 * C compiler is there; engine/interest.py uses it when it imports, unless the environment
 * sets TICKWIRE_NO_SPEEDUPS. tests/test_speedups.py checks every function's output
 * against its reference, byte for byte.
 *
 * Arrays come in through the buffer protocol (no numpy headers: the build needs only
 * Python's): 1-D, C-contiguous, 8-byte integers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* -- buffers ------------------------------------------------------------------------- */

/* The struct-module type code of a buffer's items ('q', 'f', '?', ...), or 0 when the
 * format is empty or compound, its byte order is not this machine's, or its memory is
 * not aligned for its items (the loops read through typed pointers). */
static char
item_code(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    size_t len = strlen(f);
    const uint16_t one = 1;
    int little = *(const uint8_t *)&one;
    if (len == 2) {
        if (!(f[0] == '@' || f[0] == '=' || f[0] == (little ? '<' : '>')))
            return 0;
        f++;
    } else if (len != 1) {
        return 0;
    }
    if (view->itemsize <= 0 || (uintptr_t)view->buf % (uintptr_t)view->itemsize)
        return 0;
    return f[0];
}

/* Whether a buffer's type code is one of `codes`. */
static int
code_in(const Py_buffer *view, const char *codes)
{
    char c = item_code(view);
    return c && strchr(codes, c);
}

static int
get_array_nd(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->ndim != ndim || view->itemsize != 8 || !code_in(view, "qQlL")) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: expected a %d-D array of 8-byte integers", name, ndim);
        return -1;
    }
    return 0;
}

static int
get_array(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    return get_array_nd(obj, view, writable, 1, name);
}

#define LEN(view) ((view).len / 8)

/* -- bits ---------------------------------------------------------------------------- */

static inline int
vlen(uint64_t v)
{
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline int
bit_length(uint64_t v)
{
    int n = 0;
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
}

/* LSB-first bit writer: whole 64-bit words as they fill, the rest on flush. It stores
 * only bytes of what it was given (a word when 64 bits are held, then ceil(n / 8) bytes
 * on flush), so writing `bits` bits fills exactly ceil(bits / 8) bytes from its start,
 * every one of them: the buffer needs no zeroing and no slack. */
typedef struct {
    uint8_t *p;
    uint64_t acc;
    int n; /* bits held in acc, 0..63 */
} BitWriter;

static inline void
store64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void
put_bits(BitWriter *w, uint64_t v, int width)
{
    if (width <= 0)
        return;
    if (width < 64)
        v &= ((uint64_t)1 << width) - 1;
    w->acc |= v << w->n;
    if (w->n + width >= 64) {
        store64(w->p, w->acc);
        w->p += 8;
        int taken = 64 - w->n; /* bits of v now written */
        w->acc = taken < 64 ? v >> taken : 0;
        w->n += width - 64;
    } else {
        w->n += width;
    }
}

static inline void
flush_bits(BitWriter *w)
{
    for (int k = 0; k < w->n; k += 8)
        *w->p++ = (uint8_t)(w->acc >> k);
    w->acc = 0;
    w->n = 0;
}

/* -- entity sync ----------------------------------------------------------------------- */

#define MAX_FIELDS 64
enum { UPDATE = 0, ENTER = 1, DEPART = 2 }; /* group kinds, the low 2 bits of a code */

/* The struct's fields: each one's wire values (indexed by entity id) and wire width. */
typedef struct {
    Py_ssize_t nf, held; /* fields; buffers held */
    Py_buffer views[MAX_FIELDS];
    int widths[MAX_FIELDS];
} Fields;

static void
fields_release(Fields *f)
{
    for (Py_ssize_t i = 0; i < f->held; i++)
        PyBuffer_Release(&f->views[i]);
    f->held = 0;
}

static int
fields_get(Fields *f, PyObject *o_vals, PyObject *o_widths)
{
    f->nf = f->held = 0;
    if (!PyTuple_Check(o_widths) || !PyTuple_Check(o_vals)) {
        PyErr_SetString(PyExc_TypeError, "vals and widths must be tuples");
        return -1;
    }
    Py_ssize_t nf = PyTuple_GET_SIZE(o_widths);
    if (nf < 1 || nf > MAX_FIELDS || PyTuple_GET_SIZE(o_vals) != nf) {
        PyErr_SetString(PyExc_ValueError, "one value array and one width per field, 1 to 64 fields");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nf; i++) {
        long w = PyLong_AsLong(PyTuple_GET_ITEM(o_widths, i));
        if (w == -1 && PyErr_Occurred())
            return -1;
        if (w < 0 || w > 64) {
            PyErr_SetString(PyExc_ValueError, "a field's width must be 0 to 64 bits");
            return -1;
        }
        f->widths[i] = (int)w;
    }
    for (; f->held < nf; f->held++) {
        if (get_array(PyTuple_GET_ITEM(o_vals, f->held), &f->views[f->held], 0, "vals") < 0) {
            fields_release(f);
            return -1;
        }
    }
    f->nf = nf;
    return 0;
}

/* One tick's records: segment (a cell's updates, or ncells + a cell's snapshot), code
 * (kind | field mask << 2), the fields carried, and the entity id. */
typedef struct {
    int64_t seg;
    uint64_t code, mask;
    int64_t id;
} Record;

typedef struct {
    Py_ssize_t start; /* first record */
    Py_ssize_t count;
    int64_t seg;
    uint64_t code, mask, first;
    int gapw;  /* gap width of the header: 0 for plain ids */
    int bits;  /* bits of a record after the first */
    Py_ssize_t total; /* bytes of the group, header included */
} Group;

/* Stable sort of the records by (segment, code): LSD radix on the code's bytes that
 * vary, then a counting sort on the segment. `tmp` holds n records. */
static int
sort_records(Record *rec, Record *tmp, Py_ssize_t n, Py_ssize_t nsegs)
{
    uint64_t all_or = 0, all_and = ~(uint64_t)0;
    for (Py_ssize_t i = 0; i < n; i++) {
        all_or |= rec[i].code;
        all_and &= rec[i].code;
    }
    Py_ssize_t count[256];
    for (int shift = 0; shift < 64; shift += 8) {
        if (!(((all_or ^ all_and) >> shift) & 0xFF))
            continue; /* the same byte in every code */
        memset(count, 0, sizeof count);
        for (Py_ssize_t i = 0; i < n; i++)
            count[(rec[i].code >> shift) & 0xFF]++;
        Py_ssize_t at = 0;
        for (int d = 0; d < 256; d++) {
            Py_ssize_t c = count[d];
            count[d] = at;
            at += c;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            tmp[count[(rec[i].code >> shift) & 0xFF]++] = rec[i];
        memcpy(rec, tmp, n * sizeof(Record));
    }
    Py_ssize_t *start = PyMem_Calloc(nsegs + 1, sizeof(Py_ssize_t));
    if (!start) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        start[rec[i].seg + 1]++;
    for (Py_ssize_t s = 0; s < nsegs; s++)
        start[s + 1] += start[s];
    for (Py_ssize_t i = 0; i < n; i++)
        tmp[start[rec[i].seg]++] = rec[i];
    memcpy(rec, tmp, n * sizeof(Record));
    PyMem_Free(start);
    return 0;
}

/* The bytes of sorted records (WIRE.md, "Entity sync"), and every segment's start in
 * `off` (nsegs + 1 of them). */
static PyObject *
encode_records(const Record *rec, Py_ssize_t n, const Fields *f, int id_bits, int64_t *off, Py_ssize_t nsegs)
{
    Py_ssize_t ncells = nsegs / 2;
    const uint64_t *vals[MAX_FIELDS];
    Py_ssize_t nvals[MAX_FIELDS];
    for (Py_ssize_t i = 0; i < f->nf; i++) {
        vals[i] = f->views[i].buf;
        nvals[i] = LEN(f->views[i]);
    }
    Group *groups = PyMem_Malloc((n ? n : 1) * sizeof(Group));
    if (!groups)
        return PyErr_NoMemory();
    PyObject *result = NULL;

    /* Groups: runs of one segment and code; ids ascend in each. */
    Py_ssize_t ng = 0;
    uint64_t maxgap = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        const Record *r = &rec[k];
        if (ng && groups[ng - 1].seg == r->seg && groups[ng - 1].code == r->code) {
            uint64_t gap = (uint64_t)(r->id - rec[k - 1].id - 1);
            if (gap > maxgap)
                maxgap = gap;
            groups[ng - 1].count++;
            continue;
        }
        if (ng)
            groups[ng - 1].gapw = maxgap ? bit_length(maxgap) : 1;
        Group *g = &groups[ng++];
        g->start = k;
        g->count = 1;
        g->seg = r->seg;
        g->code = r->code;
        g->mask = r->mask;
        g->first = (uint64_t)r->id;
        maxgap = 0;
    }
    if (ng)
        groups[ng - 1].gapw = maxgap ? bit_length(maxgap) : 1;

    /* Each group's size: it sends its first id as a varint and each next one as the gap
     * from the one before, in the fewest bits that hold its largest gap, when that is
     * smaller than plain ids. */
    for (Py_ssize_t i = 0; i < ng; i++) {
        Group *g = &groups[i];
        int fbits = 0;
        int64_t last = rec[g->start + g->count - 1].id;
        for (Py_ssize_t j = 0; j < f->nf; j++) {
            if (g->mask >> j & 1) {
                fbits += f->widths[j];
                if (last >= nvals[j]) {
                    PyErr_SetString(PyExc_ValueError, "an id is past the end of a value array");
                    goto done;
                }
            }
        }
        int first_len = vlen(g->first);
        int delta = 8 * first_len + (g->count - 1) * (int64_t)g->gapw < g->count * (int64_t)id_bits;
        if (!delta)
            g->gapw = 0;
        g->bits = (delta ? g->gapw : id_bits) + fbits;
        int head = vlen(g->code) + vlen((uint64_t)g->count) + 1 + (delta ? first_len : 0);
        g->total = head + ((g->count * (int64_t)g->bits - g->gapw + 7) >> 3);
    }

    /* Segment sizes, in segment order, and the offsets. */
    Py_ssize_t total = 0;
    int64_t at = 0; /* the next segment whose end is unwritten */
    off[0] = 0;
    for (Py_ssize_t i = 0; i < ng;) {
        int64_t s = groups[i].seg;
        Py_ssize_t j = i, body = 0;
        while (j < ng && groups[j].seg == s)
            body += groups[j++].total;
        for (; at < s; at++)
            off[at + 1] = total;
        total += vlen((uint64_t)(s % ncells) << 1) + vlen((uint64_t)(j - i)) + body;
        off[s + 1] = total;
        at = s + 1;
        i = j;
    }
    for (; at < nsegs; at++)
        off[at + 1] = total;

    /* The bytes. Every one is written: headers, then each group's records through the
     * bit writer, which stores only bytes of its own group. */
    result = PyBytes_FromStringAndSize(NULL, total);
    if (!result)
        goto done;
    uint8_t *base = (uint8_t *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < ng;) {
        int64_t s = groups[i].seg;
        Py_ssize_t j = i;
        while (j < ng && groups[j].seg == s)
            j++;
        uint8_t *p = base + off[s];
        p = put_varint(p, (uint64_t)(s % ncells) << 1); /* the op tag: OP_CELL */
        p = put_varint(p, (uint64_t)(j - i));
        for (; i < j; i++) {
            const Group *g = &groups[i];
            uint8_t *end = p + g->total;
            p = put_varint(p, g->code);
            p = put_varint(p, (uint64_t)g->count);
            *p++ = (uint8_t)g->gapw;
            if (g->gapw)
                p = put_varint(p, g->first);
            BitWriter w = {p, 0, 0};
            for (Py_ssize_t k = g->start; k < g->start + g->count; k++) {
                int64_t id = rec[k].id;
                if (!g->gapw)
                    put_bits(&w, (uint64_t)id, id_bits);
                else if (k > g->start)
                    put_bits(&w, (uint64_t)(id - rec[k - 1].id - 1), g->gapw);
                uint64_t m = g->mask;
                for (int fi = 0; m; fi++, m >>= 1) {
                    if (m & 1)
                        put_bits(&w, vals[fi][id], f->widths[fi]);
                }
            }
            flush_bits(&w);
            p = end;
        }
    }

done:
    PyMem_Free(groups);
    return result;
}

static int
get_flags(PyObject *obj, Py_buffer *view, Py_ssize_t n, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->ndim != 1 || view->itemsize != 1 || !code_in(view, "?bB") || view->len != n) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: expected %zd booleans", name, n);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(sync_records_doc,
"sync_records(cell, prev, mask, watched, is_snap, vals, widths, id_bits, off)\n"
"    -> (bytes, records)\n\n"
"engine/interest.py's sync_records (its reference): one tick's entity records, from\n"
"every row's cell now and at the last tick (int64, -1: not alive) and changed-field\n"
"mask, the watched cells and those snapshotted (booleans); their bytes in one buffer,\n"
"in segment order, each segment's start written to `off` (int64, 2 * ncells + 1).");

static PyObject *
sync_records(PyObject *self, PyObject *args)
{
    PyObject *o_cell, *o_prev, *o_mask, *o_watched, *o_snap, *o_vals, *o_widths, *o_off;
    int id_bits;
    if (!PyArg_ParseTuple(args, "OOOOOOOiO:sync_records", &o_cell, &o_prev, &o_mask, &o_watched, &o_snap,
                          &o_vals, &o_widths, &id_bits, &o_off))
        return NULL;
    Py_buffer b_cell = {0}, b_prev = {0}, b_mask = {0}, b_watched = {0}, b_snap = {0}, b_off = {0};
    Fields fields = {0};
    Record *rec = NULL;
    PyObject *buf = NULL, *result = NULL;

    if (get_array(o_cell, &b_cell, 0, "cell") < 0 || get_array(o_prev, &b_prev, 0, "prev") < 0
        || get_array(o_mask, &b_mask, 0, "mask") < 0 || get_array(o_off, &b_off, 1, "off") < 0)
        goto done;
    Py_ssize_t n = LEN(b_cell), nsegs = LEN(b_off) - 1, ncells = nsegs / 2;
    if (LEN(b_prev) != n || LEN(b_mask) != n) {
        PyErr_SetString(PyExc_ValueError, "cell, prev and mask differ in length");
        goto done;
    }
    if (nsegs < 2 || nsegs % 2) {
        PyErr_SetString(PyExc_ValueError, "off must hold 2 * ncells + 1 offsets");
        goto done;
    }
    if (get_flags(o_watched, &b_watched, ncells, "watched") < 0 || get_flags(o_snap, &b_snap, ncells, "is_snap") < 0)
        goto done;
    if (id_bits < 1 || id_bits > 64) {
        PyErr_SetString(PyExc_ValueError, "id_bits must be 1 to 64");
        goto done;
    }
    if (fields_get(&fields, o_vals, o_widths) < 0)
        goto done;
    uint64_t full = fields.nf == 64 ? ~(uint64_t)0 : ((uint64_t)1 << fields.nf) - 1;

    const int64_t *cell = b_cell.buf, *prev = b_prev.buf;
    const uint64_t *mask = b_mask.buf;
    const uint8_t *watched = b_watched.buf, *snap = b_snap.buf;
    /* At most three records a row: an update or an enter, a departure, a snapshot row. */
    rec = PyMem_Malloc((3 * n + 1) * 2 * sizeof(Record));
    if (!rec) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t nrec = 0;
    for (Py_ssize_t id = 0; id < n; id++) {
        int64_t c = cell[id], p = prev[id];
        if (c < -1 || c >= ncells || p < -1 || p >= ncells) {
            PyErr_SetString(PyExc_ValueError, "a cell is outside the grid");
            goto done;
        }
        if (mask[id] & ~full) {
            PyErr_SetString(PyExc_ValueError, "a field mask names a field that does not exist");
            goto done;
        }
        int same = c >= 0 && p == c;
        if (same) {
            if (mask[id] && watched[c])
                rec[nrec++] = (Record){c, mask[id] << 2 | UPDATE, mask[id], id};
        } else {
            if (c >= 0 && watched[c])
                rec[nrec++] = (Record){c, ENTER, full, id};
            if (p >= 0 && watched[p])
                rec[nrec++] = (Record){p, DEPART, 0, id};
        }
        if (c >= 0 && snap[c])
            rec[nrec++] = (Record){ncells + c, ENTER, full, id};
    }
    if (sort_records(rec, rec + 3 * n + 1, nrec, nsegs) < 0)
        goto done;
    buf = encode_records(rec, nrec, &fields, id_bits, b_off.buf, nsegs);
    if (buf)
        result = Py_BuildValue("(Nn)", buf, nrec);

done:
    PyMem_Free(rec);
    fields_release(&fields);
    Py_buffer *views[] = {&b_cell, &b_prev, &b_mask, &b_watched, &b_snap, &b_off};
    for (size_t i = 0; i < sizeof views / sizeof *views; i++)
        if (views[i]->obj)
            PyBuffer_Release(views[i]);
    return result;
}

/* -- entity table sync ------------------------------------------------------------- */

/* A column's buffer: 1-D, C-contiguous, of one of the numeric formats below. */
static int
get_column(PyObject *obj, Py_buffer *view, const char *kinds, Py_ssize_t n)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->ndim != 1 || !code_in(view, kinds) || view->len / view->itemsize != n) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "column: expected %zd values of a kind in '%s'", n, kinds);
        return -1;
    }
    return 0;
}

/* A field's pass: its column (of one of the formats `kinds`), and the rows of wire (out),
sent and mask (in and out) of the same length, all checked; bit 0 to 63. */
typedef struct {
    Py_buffer col, wire, sent, mask;
    Py_ssize_t n;
} FieldPass;

static int
field_pass_get(FieldPass *fp, PyObject *o_col, const char *kinds, PyObject *o_wire, PyObject *o_sent,
               PyObject *o_mask, int bit)
{
    if (bit < 0 || bit > 63) {
        PyErr_SetString(PyExc_ValueError, "bit must be 0 to 63");
        return -1;
    }
    if (get_array(o_wire, &fp->wire, 1, "wire") < 0)
        return -1;
    fp->n = LEN(fp->wire);
    if (get_array(o_sent, &fp->sent, 0, "sent") < 0)
        goto no_sent;
    if (get_array(o_mask, &fp->mask, 1, "mask") < 0)
        goto no_mask;
    if (LEN(fp->sent) != fp->n || LEN(fp->mask) != fp->n) {
        PyErr_SetString(PyExc_ValueError, "wire, sent and mask differ in length");
        goto no_col;
    }
    if (get_column(o_col, &fp->col, kinds, fp->n) < 0)
        goto no_col;
    return 0;
no_col:
    PyBuffer_Release(&fp->mask);
no_mask:
    PyBuffer_Release(&fp->sent);
no_sent:
    PyBuffer_Release(&fp->wire);
    return -1;
}

static void
field_pass_release(FieldPass *fp)
{
    PyBuffer_Release(&fp->col);
    PyBuffer_Release(&fp->wire);
    PyBuffer_Release(&fp->sent);
    PyBuffer_Release(&fp->mask);
}

PyDoc_STRVAR(wire_quant_doc,
"wire_quant(col, min, step, qtop, wire, sent, mask, bit) -> None\n\n"
"FieldSpec.diff_into for a quantised field (engine/entities.py; its reference is\n"
"Quant.quantise_array): wire[i] = clamp(round_half_even((col[i] - min) / step), 0,\n"
"qtop) in doubles, and bit `bit` of mask[i] set where wire[i] != sent[i]. col holds\n"
"float32 or float64 values. A NaN raises ValueError (wire and mask then hold a part of\n"
"the results: the caller drops them).");

static PyObject *
wire_quant(PyObject *self, PyObject *args)
{
    PyObject *o_col, *o_wire, *o_sent, *o_mask;
    double min, step;
    unsigned long long qtop;
    int bit;
    if (!PyArg_ParseTuple(args, "OddKOOOi:wire_quant", &o_col, &min, &step, &qtop, &o_wire, &o_sent, &o_mask, &bit))
        return NULL;
    if (qtop >= ((unsigned long long)1 << 53)) {
        PyErr_SetString(PyExc_ValueError, "qtop must be under 2**53");
        return NULL;
    }
    FieldPass fp;
    if (field_pass_get(&fp, o_col, "fd", o_wire, o_sent, o_mask, bit) < 0)
        return NULL;
    uint64_t *w = fp.wire.buf, *m = fp.mask.buf, flag = (uint64_t)1 << bit;
    const uint64_t *sv = fp.sent.buf;
    const double top = (double)qtop;
    int nan = 0;
    for (Py_ssize_t i = 0; i < fp.n; i++) {
        double v = fp.col.itemsize == 4 ? (double)((const float *)fp.col.buf)[i] : ((const double *)fp.col.buf)[i];
        double q = rint((v - min) / step);
        if (q != q) { /* refused below; no NaN to integer conversion (undefined in C) */
            nan = 1;
            q = 0.0;
        }
        q = q < 0.0 ? 0.0 : q;
        q = q > top ? top : q;
        w[i] = (uint64_t)q;
        if (w[i] != sv[i])
            m[i] |= flag;
    }
    field_pass_release(&fp);
    if (nan) {
        PyErr_SetString(PyExc_ValueError, "NaN cannot be quantised");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(wire_int_doc,
"wire_int(col, lo, hi, width, wire, sent, mask, bit) -> None\n\n"
"FieldSpec.diff_into for an integer or boolean field (engine/entities.py; its reference\n"
"is FieldSpec.to_wire): wire[i] = col[i] as a two's complement integer of `width` bits,\n"
"and bit `bit` of mask[i] set where wire[i] != sent[i]. A value outside lo..hi (both\n"
"within int64) raises ValueError and writes nothing.");

static PyObject *
wire_int(PyObject *self, PyObject *args)
{
    PyObject *o_col, *o_wire, *o_sent, *o_mask;
    long long lo, hi;
    int width, bit;
    if (!PyArg_ParseTuple(args, "OLLiOOOi:wire_int", &o_col, &lo, &hi, &width, &o_wire, &o_sent, &o_mask, &bit))
        return NULL;
    if (width < 1 || width > 64) {
        PyErr_SetString(PyExc_ValueError, "width must be 1 to 64");
        return NULL;
    }
    FieldPass fp;
    if (field_pass_get(&fp, o_col, "?bBhHiIlLqQ", o_wire, o_sent, o_mask, bit) < 0)
        return NULL;
    PyObject *result = NULL;
    char code = item_code(&fp.col);
    int is_signed = strchr("bhilq", code) != NULL, is_bool = code == '?';
    uint64_t keep = width == 64 ? ~(uint64_t)0 : ((uint64_t)1 << width) - 1;
    uint64_t *w = fp.wire.buf, *m = fp.mask.buf, flag = (uint64_t)1 << bit;
    const uint64_t *sv = fp.sent.buf;
    Py_ssize_t n = fp.n, itemsize = fp.col.itemsize;
    const char *base = fp.col.buf;
    /* Check every value first, so that a refused column writes nothing. */
    for (int pass = 0; pass < 2; pass++) {
        for (Py_ssize_t i = 0; i < n; i++) {
            const char *p = base + i * itemsize;
            long long v;
            int over = 0; /* a uint64 past LLONG_MAX: over any hi */
            switch (itemsize) {
            /* (long long) on each side: a ternary of int32_t and uint32_t is unsigned */
            case 1: v = is_bool ? *(const uint8_t *)p != 0 : is_signed ? (long long)*(const int8_t *)p : (long long)*(const uint8_t *)p; break;
            case 2: v = is_signed ? (long long)*(const int16_t *)p : (long long)*(const uint16_t *)p; break;
            case 4: v = is_signed ? (long long)*(const int32_t *)p : (long long)*(const uint32_t *)p; break;
            default:
                v = *(const int64_t *)p;
                over = !is_signed && v < 0;
            }
            if (pass == 0) {
                if (over || v < lo || v > hi) {
                    PyErr_Format(PyExc_ValueError, "a value is out of range %lld..%lld", lo, hi);
                    goto done;
                }
                continue;
            }
            uint64_t x = (uint64_t)v & keep;
            w[i] = x;
            if (x != sv[i])
                m[i] |= flag;
        }
    }
    result = Py_NewRef(Py_None);
done:
    field_pass_release(&fp);
    return result;
}

/* -- messages from ranges of a buffer ----------------------------------------------- */

PyDoc_STRVAR(join_messages_doc,
"join_messages(prefix, buf, a, b) -> list[bytes]\n\n"
"engine/interest.py's join_messages (its reference): for each row k of the (k, m)\n"
"int64 arrays a and b, the bytes buf[a[k, j]:b[k, j]] for j = 0..m-1 (an empty or\n"
"reversed range adds nothing), after `prefix` and the varint of their total length;\n"
"a row with no bytes gives no message.");

static PyObject *
join_messages(PyObject *self, PyObject *args)
{
    Py_buffer prefix = {0}, buf = {0}, ba = {0}, bb = {0};
    PyObject *a, *b, *out = NULL;
    if (!PyArg_ParseTuple(args, "y*y*OO:join_messages", &prefix, &buf, &a, &b))
        return NULL;
    if (get_array_nd(a, &ba, 0, 2, "a") < 0)
        goto done;
    if (get_array_nd(b, &bb, 0, 2, "b") < 0)
        goto done;
    if (ba.shape[0] != bb.shape[0] || ba.shape[1] != bb.shape[1]) {
        PyErr_SetString(PyExc_ValueError, "a and b differ in shape");
        goto done;
    }
    Py_ssize_t rows = ba.shape[0], m = ba.shape[1], size = buf.len;
    const int64_t *pa = ba.buf, *pb = bb.buf;
    for (Py_ssize_t i = 0; i < rows * m; i++) {
        if (pb[i] > pa[i] && (pa[i] < 0 || pb[i] > size)) {
            PyErr_SetString(PyExc_ValueError, "a range is outside the buffer");
            goto done;
        }
    }
    out = PyList_New(0);
    if (!out)
        goto done;
    const uint8_t *src = buf.buf;
    for (Py_ssize_t k = 0; k < rows; k++) {
        const int64_t *ra = pa + k * m, *rb = pb + k * m;
        uint64_t total = 0;
        for (Py_ssize_t j = 0; j < m; j++)
            if (rb[j] > ra[j])
                total += (uint64_t)(rb[j] - ra[j]);
        if (!total)
            continue;
        PyObject *msg = PyBytes_FromStringAndSize(NULL, prefix.len + vlen(total) + (Py_ssize_t)total);
        if (!msg) {
            Py_CLEAR(out);
            goto done;
        }
        uint8_t *p = (uint8_t *)PyBytes_AS_STRING(msg);
        memcpy(p, prefix.buf, prefix.len);
        p = put_varint(p + prefix.len, total);
        for (Py_ssize_t j = 0; j < m; j++) {
            if (rb[j] > ra[j]) {
                memcpy(p, src + ra[j], (size_t)(rb[j] - ra[j]));
                p += rb[j] - ra[j];
            }
        }
        int failed = PyList_Append(out, msg);
        Py_DECREF(msg);
        if (failed) {
            Py_CLEAR(out);
            goto done;
        }
    }

done:
    if (ba.obj)
        PyBuffer_Release(&ba);
    if (bb.obj)
        PyBuffer_Release(&bb);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&buf);
    return out;
}

/* -- a room's frames ----------------------------------------------------------------- */

static PyObject *s_session, *s_conn, *s_closed, *s_out, *s_state, *s_writable, *s_fast, *s_codec,
    *s_concatenates, *s_limits, *s_max_out_frame_size, *s_transport, *s_write;

/* bool(getattr(obj, name)), or -1 */
static int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (!v)
        return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

/* Whether socket `sock` takes the fast path for a frame of n bytes (1, with a new
 * reference to its transport in *transport), or not (0), or an error (-1): the
 * conditions of engine/socket.py's room_frames, in its order. */
static int
fast_path(PyObject *sock, PyObject *private, Py_ssize_t n, PyObject *closing, PyObject **transport)
{
    PyObject *session = NULL, *conn = NULL, *v = NULL;
    int t = PyObject_IsTrue(private), r = -1;
/* a condition of the slow path: t is 1 (slow), 0 (go on) or -1 (error) */
#define SLOW_IF(cond)                    \
    do {                                 \
        t = (cond);                      \
        if (t != 0) {                    \
            r = t < 0 ? -1 : 0;          \
            goto done;                   \
        }                                \
    } while (0)
    SLOW_IF(t);
    if (!(session = PyObject_GetAttr(sock, s_session)) || !(conn = PyObject_GetAttr(sock, s_conn)))
        goto done;
    SLOW_IF(attr_true(sock, s_closed));
    if (!(v = PyObject_GetAttr(session, s_out)))
        goto done;
    t = v != Py_None;
    Py_CLEAR(v);
    SLOW_IF(t);
    if (!(v = PyObject_GetAttr(session, s_state)))
        goto done;
    t = PyObject_RichCompareBool(v, closing, Py_EQ);
    Py_CLEAR(v);
    SLOW_IF(t);
    t = attr_true(conn, s_writable);
    SLOW_IF(t < 0 ? -1 : !t);
    t = attr_true(conn, s_fast);
    SLOW_IF(t < 0 ? -1 : !t);
    if (!(v = PyObject_GetAttr(sock, s_codec)))
        goto done;
    PyObject *c = PyObject_GetAttr(v, s_concatenates); /* getattr(codec, "concatenates", False) */
    Py_CLEAR(v);
    if (!c) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            goto done;
        PyErr_Clear();
        SLOW_IF(1);
    }
    t = PyObject_IsTrue(c);
    Py_DECREF(c);
    SLOW_IF(t < 0 ? -1 : !t);
    if (!(v = PyObject_GetAttr(session, s_limits)))
        goto done;
    PyObject *limit = PyObject_GetAttr(v, s_max_out_frame_size);
    Py_CLEAR(v);
    if (!limit)
        goto done;
    if (PyLong_CheckExact(limit)) { /* n > limit, as Python compares them */
        int overflow;
        long long max = PyLong_AsLongLongAndOverflow(limit, &overflow);
        t = overflow ? overflow < 0 : (max == -1 && PyErr_Occurred()) ? -1 : n > max;
    } else {
        PyObject *size = PyLong_FromSsize_t(n);
        t = size ? PyObject_RichCompareBool(size, limit, Py_GT) : -1;
        Py_XDECREF(size);
    }
    Py_DECREF(limit);
    SLOW_IF(t);
    if ((*transport = PyObject_GetAttr(conn, s_transport)))
        r = 1;
#undef SLOW_IF
done:
    Py_XDECREF(session);
    Py_XDECREF(conn);
    return r;
}

PyDoc_STRVAR(room_frames_doc,
"room_frames(sockets, tails, sections, closing, slow) -> (frames, bytes)\n\n"
"The loop of engine/socket.py's room_frames (its reference, _room_frames): for each\n"
"(..., socket id, header, view, private) section of a known socket, in order, either\n"
"the WebSocket frame of header + tails[view] written to its transport (the fast path),\n"
"or slow(socket, header, view, private). Returns the fast path's frames and bytes.");

static PyObject *
room_frames(PyObject *self, PyObject *args)
{
    PyObject *sockets, *tails_in, *sections, *closing, *slow;
    if (!PyArg_ParseTuple(args, "O!OOOO:room_frames", &PyDict_Type, &sockets, &tails_in, &sections, &closing, &slow))
        return NULL;
    /* A tuple of our own: the loop runs Python code (attribute reads, writes, slow), and
     * the tails it reads must stay put. */
    PyObject *tails = PySequence_Tuple(tails_in), *it = NULL, *sec = NULL, *result = NULL;
    if (!tails || !(it = PyObject_GetIter(sections)))
        goto done;
    Py_ssize_t frames = 0, nbytes = 0, ntails = PyTuple_GET_SIZE(tails);
    while ((sec = PyIter_Next(it))) {
        if (!PyTuple_Check(sec) || PyTuple_GET_SIZE(sec) != 6) {
            PyErr_SetString(PyExc_TypeError, "a section is a tuple of 6");
            goto done;
        }
        PyObject *header = PyTuple_GET_ITEM(sec, 3), *view_o = PyTuple_GET_ITEM(sec, 4), *private = PyTuple_GET_ITEM(sec, 5);
        PyObject *sock = PyDict_GetItemWithError(sockets, PyTuple_GET_ITEM(sec, 2));
        if (!sock) {
            if (PyErr_Occurred())
                goto done;
            Py_CLEAR(sec);
            continue;
        }
        Py_ssize_t view = PyLong_AsSsize_t(view_o);
        if (view == -1 && PyErr_Occurred())
            goto done;
        if (view < 0 || view >= ntails || !PyBytes_Check(header) || !PyBytes_Check(PyTuple_GET_ITEM(tails, view))) {
            PyErr_SetString(PyExc_ValueError, "a section's header is not bytes, or its view is not a tail");
            goto done;
        }
        PyObject *tail = PyTuple_GET_ITEM(tails, view), *transport = NULL;
        Py_ssize_t nh = PyBytes_GET_SIZE(header), nt = PyBytes_GET_SIZE(tail), n = nh + nt;
        Py_INCREF(sock);
        int fast = fast_path(sock, private, n, closing, &transport);
        if (fast <= 0) {
            PyObject *done_ = fast < 0 ? NULL : PyObject_CallFunctionObjArgs(slow, sock, header, view_o, private, NULL);
            Py_DECREF(sock);
            if (!done_)
                goto done;
            Py_DECREF(done_);
            Py_CLEAR(sec);
            continue;
        }
        Py_DECREF(sock);
        /* An unmasked, final, binary frame (engine/transport.py's frame_header). */
        uint8_t head[10];
        Py_ssize_t hl;
        head[0] = 0x82;
        if (n < 126) {
            head[1] = (uint8_t)n;
            hl = 2;
        } else if (n < 65536) {
            head[1] = 126;
            head[2] = (uint8_t)(n >> 8);
            head[3] = (uint8_t)n;
            hl = 4;
        } else {
            head[1] = 127;
            for (int i = 0; i < 8; i++)
                head[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
            hl = 10;
        }
        PyObject *frame = PyBytes_FromStringAndSize(NULL, hl + n);
        if (!frame) {
            Py_DECREF(transport);
            goto done;
        }
        char *p = PyBytes_AS_STRING(frame);
        memcpy(p, head, hl);
        memcpy(p + hl, PyBytes_AS_STRING(header), nh);
        memcpy(p + hl + nh, PyBytes_AS_STRING(tail), nt);
        PyObject *ok = PyObject_CallMethodOneArg(transport, s_write, frame);
        Py_DECREF(frame);
        Py_DECREF(transport);
        if (!ok)
            goto done;
        Py_DECREF(ok);
        frames++;
        nbytes += n;
        Py_CLEAR(sec);
    }
    if (!PyErr_Occurred())
        result = Py_BuildValue("(nn)", frames, nbytes);

done:
    Py_XDECREF(sec);
    Py_XDECREF(it);
    Py_XDECREF(tails);
    return result;
}

/* -- a room's player sections -------------------------------------------------------- */

static PyObject *s_connected, *s_applied_seq, *s_echo_seq, *s_echo_at, *s_handle, *s_outbox, *s_view,
    *s_needs_state, *s_id, *s_worker, *s_socket_id;

/* getattr(obj, name) as a Py_ssize_t; 0 with *ok = 0 when it is not an int that fits;
 * -1 with an error set when it is missing. */
static Py_ssize_t
attr_index(PyObject *obj, PyObject *name, int *ok)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (!v)
        return -1;
    *ok = PyLong_CheckExact(v);
    Py_ssize_t x = *ok ? PyLong_AsSsize_t(v) : 0;
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        *ok = 0;
        x = 0;
    }
    return x;
}

/* A steady player's section: 1 with it in *out and its bytes added to *total, 0 when
 * the player needs RoomRunner._sections (anything else), -1 on an error. */
static int
steady_section(PyObject *player, PyObject *prefixes, PyObject *small, double now, PyObject *view_of,
               PyObject *own, PyObject *view_size, PyTypeObject *section_type, PyObject *nothing,
               PyObject **out, Py_ssize_t *total)
{
    int ok = 1, ok2 = 1;
    Py_ssize_t nsmall = PyTuple_GET_SIZE(small);
    Py_ssize_t applied = attr_index(player, s_applied_seq, &ok);
    if (applied == -1 && PyErr_Occurred())
        return -1;
    Py_ssize_t echo = attr_index(player, s_echo_seq, &ok2);
    if (echo == -1 && PyErr_Occurred())
        return -1;
    if (!ok || !ok2 || applied < 0 || applied >= nsmall || echo < 0 || echo >= nsmall)
        return 0;
    Py_ssize_t age = 0;
    if (echo) {
        PyObject *at = PyObject_GetAttr(player, s_echo_at);
        if (!at)
            return -1;
        double a = PyFloat_Check(at) ? PyFloat_AS_DOUBLE(at) : NAN;
        Py_DECREF(at);
        double ms = (now - a) * 1000.0;
        if (!(ms >= 0.0 && ms < (double)nsmall)) /* NaN included */
            return 0;
        age = (Py_ssize_t)ms; /* int(): toward zero */
    }
    PyObject *handle = PyObject_GetAttr(player, s_handle);
    if (!handle)
        return -1;
    PyObject *prefix = PyDict_GetItemWithError(prefixes, handle); /* borrowed: used at once */
    Py_DECREF(handle);
    if (!prefix)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyBytes_Check(prefix))
        return 0;
    /* The header: the prefix and three looked-up varints (TickHeaders.header). */
    PyObject *parts[4] = {prefix, PyTuple_GET_ITEM(small, applied), PyTuple_GET_ITEM(small, echo), PyTuple_GET_ITEM(small, age)};
    Py_ssize_t hl = 0;
    for (int i = 0; i < 4; i++) {
        if (!PyBytes_Check(parts[i])) {
            PyErr_SetString(PyExc_TypeError, "small varints must be bytes");
            return -1;
        }
        hl += PyBytes_GET_SIZE(parts[i]);
    }
    PyObject *header = PyBytes_FromStringAndSize(NULL, hl);
    if (!header)
        return -1;
    char *p = PyBytes_AS_STRING(header);
    for (int i = 0; i < 4; i++) {
        memcpy(p, PyBytes_AS_STRING(parts[i]), PyBytes_GET_SIZE(parts[i]));
        p += PyBytes_GET_SIZE(parts[i]);
    }

    /* From here every exit drops what it made. */
    PyObject *id = NULL, *worker = NULL, *socket_id = NULL, *view = NULL, *t = NULL, *wrapped = NULL;
    int r = -1;
    int tr = attr_true(player, s_outbox);
    if (tr != 0) {
        r = tr < 0 ? -1 : 0;
        goto out;
    }
    Py_ssize_t vi = 0;
    if (view_of != Py_None) {
        Py_ssize_t pv = attr_index(player, s_view, &ok);
        if (pv == -1 && PyErr_Occurred())
            goto out;
        if (!ok || pv >= PyList_GET_SIZE(view_of)) {
            r = 0;
            goto out;
        }
        if (pv >= 0) {
            PyObject *v = PyList_GET_ITEM(view_of, pv); /* borrowed: read at once */
            if (!PyLong_CheckExact(v)) {
                r = 0;
                goto out;
            }
            vi = PyLong_AsSsize_t(v);
            if (vi == -1 && PyErr_Occurred())
                goto out;
            if (vi == 0) { /* view 0: a message of its own, if it has one, goes with it */
                PyObject *key = PyLong_FromSsize_t(pv);
                if (!key)
                    goto out;
                PyObject *mine = PyDict_GetItemWithError(own, key);
                Py_DECREF(key);
                if (mine || PyErr_Occurred()) {
                    r = mine ? 0 : -1;
                    goto out;
                }
            }
        }
    }
    if (vi < 0 || vi >= PyList_GET_SIZE(view_size) || !PyLong_CheckExact(PyList_GET_ITEM(view_size, vi))) {
        r = 0;
        goto out;
    }
    Py_ssize_t vsize = PyLong_AsSsize_t(PyList_GET_ITEM(view_size, vi));
    if (vsize == -1 && PyErr_Occurred())
        goto out;
    tr = attr_true(player, s_needs_state);
    if (tr != 0) {
        r = tr < 0 ? -1 : 0;
        goto out;
    }
    if (!(id = PyObject_GetAttr(player, s_id)) || !(worker = PyObject_GetAttr(player, s_worker))
        || !(socket_id = PyObject_GetAttr(player, s_socket_id)) || !(view = PyLong_FromSsize_t(vi)))
        goto out;
#if PY_VERSION_HEX < 0x030E0000
    /* What tuple.__new__(PlayerSection, (...)) makes, in one allocation: every item is
     * set before any other code runs (the garbage collector never sees a NULL item). */
    PyObject *sec = section_type->tp_alloc(section_type, 6);
    if (!sec)
        goto out;
    PyObject *items[6] = {id, worker, socket_id, header, view, nothing};
    for (int i = 0; i < 6; i++)
        PyTuple_SET_ITEM(sec, i, Py_NewRef(items[i]));
    *out = sec;
#else
    /* Python 3.14 tuples cache their hash, which only tuple's own constructors reset. */
    if (!(t = PyTuple_Pack(6, id, worker, socket_id, header, view, nothing)) || !(wrapped = PyTuple_Pack(1, t)))
        goto out;
    if (!(*out = PyTuple_Type.tp_new(section_type, wrapped, NULL)))
        goto out;
#endif
    *total += hl + vsize;
    r = 1;
out:
    Py_DECREF(header);
    Py_XDECREF(id);
    Py_XDECREF(worker);
    Py_XDECREF(socket_id);
    Py_XDECREF(view);
    Py_XDECREF(t);
    Py_XDECREF(wrapped);
    return r;
}

PyDoc_STRVAR(room_sections_doc,
"room_sections(players, prefixes, small, now, view_of, own, view_size, section_type,\n"
"              nothing, slow) -> (sections, bytes)\n\n"
"RoomRunner._sections (engine/rooms.py, its reference) for a send tick: the sections of\n"
"the connected players, in order; a steady player's is made here (its Tick header from\n"
"its room handle's prefix and three small varints, its view, no private parts), any\n"
"other player's by slow(player), which returns (sections, bytes) as _sections does.");

static PyObject *
room_sections(PyObject *self, PyObject *args)
{
    PyObject *players, *prefixes, *small, *view_of, *own, *view_size, *nothing, *slow;
    PyTypeObject *section_type;
    double now;
    if (!PyArg_ParseTuple(args, "OO!O!dOO!O!O!OO:room_sections", &players, &PyDict_Type, &prefixes, &PyTuple_Type, &small,
                          &now, &view_of, &PyDict_Type, &own, &PyList_Type, &view_size, &PyType_Type, &section_type,
                          &nothing, &slow))
        return NULL;
    if (view_of != Py_None && !PyList_Check(view_of)) {
        PyErr_SetString(PyExc_TypeError, "view_of must be a list or None");
        return NULL;
    }
    if (!PyType_IsSubtype(section_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "section_type must be a tuple type");
        return NULL;
    }
    PyObject *out = PyList_New(0), *it = PyObject_GetIter(players), *player = NULL, *result = NULL;
    Py_ssize_t total = 0;
    if (!out || !it)
        goto done;
    while ((player = PyIter_Next(it))) {
        int t = attr_true(player, s_connected);
        if (t < 0)
            goto done;
        if (t) {
            PyObject *sec = NULL;
            int r = steady_section(player, prefixes, small, now, view_of, own, view_size, section_type, nothing, &sec, &total);
            if (r < 0)
                goto done;
            if (r) {
                int failed = PyList_Append(out, sec) < 0;
                Py_DECREF(sec);
                if (failed)
                    goto done;
            } else {
                PyObject *got = PyObject_CallOneArg(slow, player);
                if (!got)
                    goto done;
                PyObject *secs = NULL, *nb = NULL;
                int bad = !PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 2 || !PyList_Check(secs = PyTuple_GET_ITEM(got, 0))
                          || !PyLong_Check(nb = PyTuple_GET_ITEM(got, 1));
                Py_ssize_t extra = bad ? 0 : PyLong_AsSsize_t(nb);
                int failed = bad || (extra == -1 && PyErr_Occurred())
                             || PyList_SetSlice(out, PyList_GET_SIZE(out), PyList_GET_SIZE(out), secs) < 0;
                Py_DECREF(got);
                if (failed) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_TypeError, "slow(player) must return (list, int)");
                    goto done;
                }
                total += extra;
            }
        }
        Py_CLEAR(player);
    }
    if (!PyErr_Occurred())
        result = Py_BuildValue("(On)", out, total);
done:
    Py_XDECREF(player);
    Py_XDECREF(it);
    Py_XDECREF(out);
    return result;
}

static PyMethodDef methods[] = {
    {"sync_records", sync_records, METH_VARARGS, sync_records_doc},
    {"join_messages", join_messages, METH_VARARGS, join_messages_doc},
    {"wire_quant", wire_quant, METH_VARARGS, wire_quant_doc},
    {"wire_int", wire_int, METH_VARARGS, wire_int_doc},
    {"room_frames", room_frames, METH_VARARGS, room_frames_doc},
    {"room_sections", room_sections, METH_VARARGS, room_sections_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "engine._speedups", "Native twins of Tickwire's hot loops.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        {&s_session, "session"}, {&s_conn, "conn"}, {&s_closed, "closed"}, {&s_out, "out"},
        {&s_state, "state"}, {&s_writable, "writable"}, {&s_fast, "fast"}, {&s_codec, "codec"},
        {&s_concatenates, "concatenates"}, {&s_limits, "limits"},
        {&s_max_out_frame_size, "max_out_frame_size"}, {&s_transport, "transport"}, {&s_write, "write"},
        {&s_connected, "connected"}, {&s_applied_seq, "applied_seq"}, {&s_echo_seq, "echo_seq"},
        {&s_echo_at, "echo_at"}, {&s_handle, "handle"}, {&s_outbox, "outbox"}, {&s_view, "view"},
        {&s_needs_state, "needs_state"}, {&s_id, "id"}, {&s_worker, "worker"}, {&s_socket_id, "socket_id"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (!*names[i].slot && !(*names[i].slot = PyUnicode_InternFromString(names[i].name)))
            return NULL;
    }
    return PyModule_Create(&module);
}
