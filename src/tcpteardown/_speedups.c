/* tcpteardown._speedups: the loops that cost more in the interpreter (or in many numpy
 * passes) than everything else a census does (see speedups.py). Optional: where it is not built,
 * the Python code beside each caller gives the same results, slower.
 *
 * -- format_rows: many rows of text from numpy columns (views/contracts/rows.py) --------
 *
 * rows.py defines the layout (a list of pieces) and has a pure-Python engine that gives
 * the same bytes; this one exists because formatting 130,000 census connections (68 MB
 * of JSON) in the interpreter costs more than reading the capture. It only formats:
 * every check of the pieces' shapes happens here too, so bad input is a ValueError,
 * never a crash. The GIL is released while the bytes are written.
 *
 * format_rows(pieces, count, separator) -> bytes
 *   pieces: tuple of tuples, each one of (see rows.py):
 *     (LITERAL, bytes)
 *     (INT, int64 values[count], mask[count] or None)          decimal; "null" where mask
 *     (SECONDS, int64 ns[count], mask[count] or None)          "-"?whole.nnnnnnnnn; "null" where mask
 *     (TEXT, int64 index[count], tuple of bytes)               the indexed word
 *     (INT_LIST, int64 offsets[count+1], int64 values, bytes)  values[o[i]:o[i+1]] joined
 *     (TEXT_LIST, int64 offsets[count+1], int64 index, tuple of bytes, bytes)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { LITERAL, INT, SECONDS, TEXT, INT_LIST, TEXT_LIST };

typedef struct {
    int kind;
    Py_buffer values, mask, offsets;  /* .obj == NULL when unused */
    const char **words;                /* TEXT, TEXT_LIST: the vocabulary */
    Py_ssize_t *word_lengths, word_count;
    const char *text;                  /* LITERAL: the text; *_LIST: the separator */
    Py_ssize_t text_length;
} Piece;

static void release(Piece *pieces, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pieces[i].values.obj) PyBuffer_Release(&pieces[i].values);
        if (pieces[i].mask.obj) PyBuffer_Release(&pieces[i].mask);
        if (pieces[i].offsets.obj) PyBuffer_Release(&pieces[i].offsets);
        PyMem_Free(pieces[i].words);
        PyMem_Free(pieces[i].word_lengths);
    }
    PyMem_Free(pieces);
}

/* A 1-D contiguous buffer of `itemsize`-byte items, `length` long (or any length if < 0). */
static int column(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t length, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->itemsize != itemsize || view->ndim != 1 || (length >= 0 && view->shape[0] != length)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes, got %zd of %zd", what,
                     length, itemsize, view->ndim == 1 ? view->shape[0] : -1, view->itemsize);
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

static int words(PyObject *tuple, Piece *piece) {
    if (!PyTuple_Check(tuple)) {
        PyErr_SetString(PyExc_TypeError, "a vocabulary is a tuple of bytes");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    piece->words = PyMem_Calloc(n ? n : 1, sizeof(char *));
    piece->word_lengths = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    if (!piece->words || !piece->word_lengths) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *word = PyTuple_GET_ITEM(tuple, i);
        if (!PyBytes_Check(word)) {
            PyErr_SetString(PyExc_TypeError, "a vocabulary is a tuple of bytes");
            return -1;
        }
        piece->words[i] = PyBytes_AS_STRING(word);  /* the tuple outlives the call */
        piece->word_lengths[i] = PyBytes_GET_SIZE(word);
    }
    piece->word_count = n;
    return 0;
}

static int text(PyObject *obj, Piece *piece) {
    if (!PyBytes_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "a literal or separator is bytes");
        return -1;
    }
    piece->text = PyBytes_AS_STRING(obj);
    piece->text_length = PyBytes_GET_SIZE(obj);
    return 0;
}

static int in_range(const Piece *piece, const int64_t *index, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (index[i] < 0 || index[i] >= piece->word_count) {
            PyErr_Format(PyExc_ValueError, "word index %lld outside a vocabulary of %zd",
                         (long long)index[i], piece->word_count);
            return -1;
        }
    return 0;
}

static int offsets_ok(const Py_buffer *offsets, Py_ssize_t values) {
    const int64_t *o = offsets->buf;
    Py_ssize_t n = offsets->shape[0];
    for (Py_ssize_t i = 0; i < n; i++)
        if (o[i] < 0 || o[i] > values || (i && o[i] < o[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "list offsets must rise within their values");
            return -1;
        }
    return 0;
}

static int parse(PyObject *spec, Piece *piece, Py_ssize_t count) {
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 2) {
        PyErr_SetString(PyExc_TypeError, "a piece is a tuple (kind, ...)");
        return -1;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(spec);
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    if (kind == -1 && PyErr_Occurred()) return -1;
    piece->kind = (int)kind;
    PyObject *a = PyTuple_GET_ITEM(spec, 1), *b = size > 2 ? PyTuple_GET_ITEM(spec, 2) : NULL,
             *c = size > 3 ? PyTuple_GET_ITEM(spec, 3) : NULL, *d = size > 4 ? PyTuple_GET_ITEM(spec, 4) : NULL;
    switch (kind) {
    case LITERAL:
        return text(a, piece);
    case INT:
    case SECONDS:
        if (!b) break;
        if (column(a, &piece->values, 8, count, "values") < 0) return -1;
        if (b != Py_None && column(b, &piece->mask, 1, count, "mask") < 0) return -1;
        return 0;
    case TEXT:
        if (!b) break;
        if (column(a, &piece->values, 8, count, "word index") < 0 || words(b, piece) < 0) return -1;
        return in_range(piece, piece->values.buf, count);
    case INT_LIST:
        if (!c) break;
        if (column(a, &piece->offsets, 8, count + 1, "offsets") < 0 || column(b, &piece->values, 8, -1, "values") < 0
            || text(c, piece) < 0)
            return -1;
        return offsets_ok(&piece->offsets, piece->values.shape[0]);
    case TEXT_LIST:
        if (!d) break;
        if (column(a, &piece->offsets, 8, count + 1, "offsets") < 0 || column(b, &piece->values, 8, -1, "word index") < 0
            || words(c, piece) < 0 || text(d, piece) < 0)
            return -1;
        if (offsets_ok(&piece->offsets, piece->values.shape[0]) < 0) return -1;
        return in_range(piece, piece->values.buf, piece->values.shape[0]);
    default:
        PyErr_Format(PyExc_ValueError, "unknown piece kind %ld", kind);
        return -1;
    }
    PyErr_Format(PyExc_TypeError, "piece kind %ld has too few members", kind);
    return -1;
}

/* -- writing ---------------------------------------------------------------------------- */

/* The rows are written straight into the bytes object returned (a copy of 68 MB less);
 * growing it takes the GIL back for a moment (`save`: the released thread state). */
typedef struct {
    char *start, *at, *end;
    PyObject *bytes;
    PyThreadState *save;
} Out;

static int reserve(Out *out, size_t more) {
    if ((size_t)(out->end - out->at) >= more) return 0;
    size_t used = out->at - out->start, size = (out->end - out->start) * 2;
    if (size < used + more) size = used + more + 4096;
    if (out->save) PyEval_RestoreThread(out->save);
    int failed = _PyBytes_Resize(&out->bytes, (Py_ssize_t)size) < 0;
    if (failed) PyErr_Clear();  /* said as MemoryError by the caller */
    if (out->save) out->save = PyEval_SaveThread();
    if (failed) return -1;
    out->start = PyBytes_AS_STRING(out->bytes);
    out->at = out->start + used;
    out->end = out->start + size;
    return 0;
}

static const char PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static char *digits(char *at, uint64_t value) {
    char buffer[20];
    int n = 20;
    while (value >= 100) {  /* two digits per division */
        unsigned pair = (unsigned)(value % 100) * 2;
        value /= 100;
        buffer[--n] = PAIRS[pair + 1];
        buffer[--n] = PAIRS[pair];
    }
    if (value >= 10) {
        buffer[--n] = PAIRS[value * 2 + 1];
        buffer[--n] = PAIRS[value * 2];
    } else {
        buffer[--n] = (char)('0' + value);
    }
    memcpy(at, buffer + n, 20 - n);
    return at + (20 - n);
}

static char *integer(char *at, int64_t value) {
    if (value < 0) {
        *at++ = '-';
        return digits(at, (uint64_t)0 - (uint64_t)value);
    }
    return digits(at, (uint64_t)value);
}

static char *seconds(char *at, int64_t ns) {
    uint64_t magnitude = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    if (ns < 0) *at++ = '-';
    at = digits(at, magnitude / 1000000000u);
    *at++ = '.';
    unsigned fraction = (unsigned)(magnitude % 1000000000u);
    for (int i = 7; i >= 1; i -= 2) {  /* nine digits, leading zeros kept */
        unsigned pair = (fraction % 100) * 2;
        fraction /= 100;
        at[i] = PAIRS[pair];
        at[i + 1] = PAIRS[pair + 1];
    }
    at[0] = (char)('0' + fraction);
    return at + 9;
}

#define NUMBER_ROOM 32  /* "-9223372036854775808.123456789" */

static int write_piece(Out *out, const Piece *p, Py_ssize_t row) {
    const int64_t *values = p->values.buf;
    switch (p->kind) {
    case LITERAL:
        if (reserve(out, p->text_length) < 0) return -1;
        memcpy(out->at, p->text, p->text_length);
        out->at += p->text_length;
        return 0;
    case INT:
    case SECONDS:
        if (reserve(out, NUMBER_ROOM) < 0) return -1;
        if (p->mask.obj && ((const uint8_t *)p->mask.buf)[row]) {
            memcpy(out->at, "null", 4);
            out->at += 4;
        } else {
            out->at = p->kind == INT ? integer(out->at, values[row]) : seconds(out->at, values[row]);
        }
        return 0;
    case TEXT: {
        Py_ssize_t w = values[row];
        if (reserve(out, p->word_lengths[w]) < 0) return -1;
        memcpy(out->at, p->words[w], p->word_lengths[w]);
        out->at += p->word_lengths[w];
        return 0;
    }
    default: { /* INT_LIST, TEXT_LIST */
        const int64_t *offsets = p->offsets.buf;
        for (int64_t i = offsets[row]; i < offsets[row + 1]; i++) {
            if (i > offsets[row]) {
                if (reserve(out, p->text_length) < 0) return -1;
                memcpy(out->at, p->text, p->text_length);
                out->at += p->text_length;
            }
            if (p->kind == INT_LIST) {
                if (reserve(out, NUMBER_ROOM) < 0) return -1;
                out->at = integer(out->at, values[i]);
            } else {
                Py_ssize_t w = values[i];
                if (reserve(out, p->word_lengths[w]) < 0) return -1;
                memcpy(out->at, p->words[w], p->word_lengths[w]);
                out->at += p->word_lengths[w];
            }
        }
        return 0;
    }
    }
}

static PyObject *format_rows(PyObject *self, PyObject *args) {
    PyObject *specs, *separator_obj;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "O!nO!", &PyTuple_Type, &specs, &count, &PyBytes_Type, &separator_obj)) return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "count must not be negative");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(specs);
    Piece *pieces = PyMem_Calloc(n ? n : 1, sizeof(Piece));
    if (!pieces) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++)
        if (parse(PyTuple_GET_ITEM(specs, i), &pieces[i], count) < 0) {
            release(pieces, n);
            return NULL;
        }
    const char *separator = PyBytes_AS_STRING(separator_obj);
    size_t separator_length = PyBytes_GET_SIZE(separator_obj);
    Out out = {NULL, NULL, NULL, NULL, NULL};
    out.bytes = PyBytes_FromStringAndSize(NULL, 4096 + (Py_ssize_t)count * 640);  /* a census row: ~520 bytes */
    if (!out.bytes) {
        release(pieces, n);
        return NULL;
    }
    out.start = out.at = PyBytes_AS_STRING(out.bytes);
    out.end = out.start + PyBytes_GET_SIZE(out.bytes);
    int failed = 0;
    out.save = PyEval_SaveThread();
    for (Py_ssize_t row = 0; row < count && !failed; row++) {
        if (row) {
            if (reserve(&out, separator_length) < 0) { failed = 1; break; }
            memcpy(out.at, separator, separator_length);
            out.at += separator_length;
        }
        for (Py_ssize_t i = 0; i < n && !failed; i++) failed = write_piece(&out, &pieces[i], row) < 0;
    }
    PyEval_RestoreThread(out.save);
    release(pieces, n);
    if (failed) {
        Py_XDECREF(out.bytes);
        return PyErr_NoMemory();
    }
    if (_PyBytes_Resize(&out.bytes, out.at - out.start) < 0) return NULL;
    return out.bytes;
}

/* -- walk_pcap, walk_pcapng: record and block offsets (formats/pcap_columns.py) -----------
 *
 * walk_pcap(buffer, offset, stop, big_endian) -> (bytes, next offset)
 * walk_pcapng(buffer, offset, stop, big_endian) -> (bytes, next offset)
 *
 * The per-record loops of pcap_columns.py, in C. From `offset`, while below `stop`, each
 * pcap record header's caplen leads to the next record; or each pcapng block that is an
 * EPB (type 6) of at least 32 bytes leads by its length to the next block, and the walk
 * stops at the first other block (the general reader reads that one). Nothing else is
 * judged here (a caplen beyond the snaplen, a record cut by the end of the file): the
 * caller checks the whole window after the walk, whichever walk it was. The offsets come
 * back as native int64s, with the offset where the walk stopped. `stop` must leave room
 * for a whole header below the end of the buffer (ValueError otherwise). */

static uint32_t word(const unsigned char *at, int big_endian) {
    return big_endian ? ((uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | at[3])
                      : ((uint32_t)at[3] << 24 | (uint32_t)at[2] << 16 | (uint32_t)at[1] << 8 | at[0]);
}

/* Where the record or block at `at` says the next one starts; -1: the walk stops at `at`. */
typedef Py_ssize_t (*Step)(const unsigned char *data, Py_ssize_t at, int big_endian);

static Py_ssize_t pcap_step(const unsigned char *data, Py_ssize_t at, int big_endian) {
    return at + 16 + (Py_ssize_t)word(data + at + 8, big_endian);
}

static Py_ssize_t pcapng_step(const unsigned char *data, Py_ssize_t at, int big_endian) {
    uint32_t type = word(data + at, big_endian), length = word(data + at + 4, big_endian);
    return type != 6 || length < 32 ? -1 : at + (Py_ssize_t)length;
}

static PyObject *walk(PyObject *args, Py_ssize_t header, Step step) {
    Py_buffer view;
    Py_ssize_t offset, stop;
    int big_endian;
    if (!PyArg_ParseTuple(args, "y*nnp", &view, &offset, &stop, &big_endian)) return NULL;
    if (offset < 0 || stop > view.len - header + 1) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "walk from %zd to %zd: a header at or after %zd would pass the end (%zd)",
                     offset, stop, view.len - header + 1, view.len);
        return NULL;
    }
    const unsigned char *data = view.buf;
    size_t capacity = 1024, count = 0;
    int64_t *offsets = malloc(capacity * sizeof(int64_t));
    int failed = offsets == NULL;
    Py_ssize_t at = offset;
    Py_BEGIN_ALLOW_THREADS
    while (!failed && at < stop) {
        Py_ssize_t next = step(data, at, big_endian);
        if (next < 0) break;
        if (count == capacity) {
            int64_t *grown = realloc(offsets, 2 * capacity * sizeof(int64_t));
            failed = grown == NULL;
            if (failed) break;
            offsets = grown;
            capacity *= 2;
        }
        offsets[count++] = at;
        at = next;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *result = failed ? PyErr_NoMemory()
                              : Py_BuildValue("y#n", (const char *)offsets, (Py_ssize_t)(count * sizeof(int64_t)), at);
    free(offsets);
    return result;
}

static PyObject *walk_pcap(PyObject *self, PyObject *args) { return walk(args, 16, pcap_step); }

static PyObject *walk_pcapng(PyObject *self, PyObject *args) { return walk(args, 8, pcapng_step); }

/* -- decode_tcp: a window of Ethernet or Linux cooked frames as TCP columns ---------------
 *
 * pcap_columns._decode_window's work for the common links (its numpy code is the
 * reference; tests compare both on the corpus and under fuzzing), one pass per frame
 * instead of some forty array passes. It decodes only plain frames: the link header's
 * ethertype, IPv4 without fragments or IPv6 with TCP right after the fixed header, then
 * the TCP header. A frame the numpy code sends to its Python decoder (shorter than the
 * link header, a VLAN tag where `vlan_odd`, IPv6 extension headers) makes the whole window
 * go back to the numpy code: the answer is then -1 and the outputs are undefined.
 *
 * decode_tcp(window, start, caplen, ethertype_at, header, vlan_odd, ipv4_mark,
 *            rows, sport, dport, seq, ack, flags, payload, src_hi, src_lo, dst_hi, dst_lo) -> count
 *   window: the bytes; start, caplen: int64[n] per frame; the outputs are writable arrays of
 *   n items (int64 rows, sport, dport, payload; uint32 seq, ack; uint8 flags; uint64
 *   addresses), of which the first `count` are written, for the TCP frames in order. */

static unsigned be16(const unsigned char *at) { return (unsigned)at[0] << 8 | at[1]; }

static uint32_t be32(const unsigned char *at) {
    return (uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | at[3];
}

static uint64_t be64(const unsigned char *at) { return (uint64_t)be32(at) << 32 | be32(at + 4); }

enum { D_START, D_CAPLEN, D_ROWS, D_SPORT, D_DPORT, D_SEQ, D_ACK, D_FLAGS, D_PAYLOAD, D_SRC_HI, D_SRC_LO,
       D_DST_HI, D_DST_LO, D_COUNT };

static PyObject *decode_tcp(PyObject *self, PyObject *args) {
    static const Py_ssize_t sizes[D_COUNT] = {8, 8, 8, 8, 8, 4, 4, 1, 8, 8, 8, 8, 8};
    static const char *names[D_COUNT] = {"start", "caplen", "rows", "sport", "dport", "seq", "ack", "flags",
                                         "payload", "src_hi", "src_lo", "dst_hi", "dst_lo"};
    Py_buffer window;
    PyObject *objects[D_COUNT];
    Py_buffer views[D_COUNT];
    Py_ssize_t ethertype_at, header;
    int vlan_odd;
    unsigned long long mark;
    if (!PyArg_ParseTuple(args, "y*OOnnpKOOOOOOOOOOO", &window, &objects[D_START], &objects[D_CAPLEN],
                          &ethertype_at, &header, &vlan_odd, &mark, &objects[D_ROWS], &objects[D_SPORT],
                          &objects[D_DPORT], &objects[D_SEQ], &objects[D_ACK], &objects[D_FLAGS],
                          &objects[D_PAYLOAD], &objects[D_SRC_HI], &objects[D_SRC_LO], &objects[D_DST_HI],
                          &objects[D_DST_LO]))
        return NULL;
    int got = 0, failed = 0;
    Py_ssize_t n = -1;
    for (; got < D_COUNT; got++) {
        if (PyObject_GetBuffer(objects[got], &views[got], got < D_ROWS ? PyBUF_C_CONTIGUOUS : PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
            failed = 1;
            break;
        }
        if (n < 0) n = views[got].len / sizes[got];
        if (views[got].itemsize != sizes[got] || views[got].ndim != 1 || views[got].shape[0] != n) {
            PyErr_Format(PyExc_ValueError, "decode_tcp: %s: expected %zd items of %zd bytes", names[got], n, sizes[got]);
            got++;
            failed = 1;
            break;
        }
    }
    if (!failed && (ethertype_at < 0 || header < ethertype_at + 2)) {
        PyErr_SetString(PyExc_ValueError, "decode_tcp: the ethertype must lie inside the link header");
        failed = 1;
    }
    const int64_t *start = failed ? NULL : views[D_START].buf, *caplen = failed ? NULL : views[D_CAPLEN].buf;
    for (Py_ssize_t i = 0; !failed && i < n; i++) {
        if (start[i] < 0 || caplen[i] < 0 || start[i] + caplen[i] > window.len) {
            PyErr_Format(PyExc_ValueError, "decode_tcp: frame %zd lies outside the window", i);
            failed = 1;
        }
    }
    Py_ssize_t count = 0;
    if (!failed) {
        const unsigned char *w = window.buf;
        int64_t *rows = views[D_ROWS].buf, *sport = views[D_SPORT].buf, *dport = views[D_DPORT].buf,
                *payload = views[D_PAYLOAD].buf;
        uint32_t *seq = views[D_SEQ].buf, *ack = views[D_ACK].buf;
        uint8_t *flags = views[D_FLAGS].buf;
        uint64_t *src_hi = views[D_SRC_HI].buf, *src_lo = views[D_SRC_LO].buf, *dst_hi = views[D_DST_HI].buf,
                 *dst_lo = views[D_DST_LO].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t s = start[i], e = s + caplen[i];
            if (caplen[i] < header) { count = -1; break; }  /* the Python decoder's */
            unsigned ethertype = be16(w + s + ethertype_at);
            if (vlan_odd && (ethertype == 0x8100 || ethertype == 0x88A8 || ethertype == 0x9100)) { count = -1; break; }
            int64_t l3 = s + header, tcp, tcp_len;
            int v4;
            if (ethertype == 0x0800) {
                if (l3 + 20 > e) continue;
                unsigned ver_ihl = w[l3], total = be16(w + l3 + 2), fragment = be16(w + l3 + 6) & 0x3FFF;
                int64_t ihl = (ver_ihl & 0x0F) * 4;
                if (ver_ihl >> 4 != 4 || ihl < 20 || w[l3 + 9] != 6 || fragment != 0) continue;
                tcp = l3 + ihl;
                tcp_len = (total > 0 ? (int64_t)total : e - l3) - ihl;
                v4 = 1;
            } else if (ethertype == 0x86DD) {
                if (l3 + 40 > e) continue;
                unsigned length = be16(w + l3 + 4), next = w[l3 + 6];
                if (w[l3] >> 4 != 6) continue;
                if (next == 0 || next == 43 || next == 60 || next == 51 || next == 44) { count = -1; break; }
                if (next != 6) continue;
                tcp = l3 + 40;
                tcp_len = (length > 0 ? l3 + 40 + (int64_t)length : e) - tcp;
                v4 = 0;
            } else {
                continue;
            }
            if (tcp + 20 > e) continue;
            int64_t data_offset = (w[tcp + 12] >> 4) * 4;
            rows[count] = i;
            sport[count] = be16(w + tcp);
            dport[count] = be16(w + tcp + 2);
            seq[count] = be32(w + tcp + 4);
            ack[count] = be32(w + tcp + 8);
            flags[count] = w[tcp + 13];
            payload[count] = tcp_len - data_offset > 0 ? tcp_len - data_offset : 0;
            if (v4) {
                src_hi[count] = dst_hi[count] = (uint64_t)mark;
                src_lo[count] = be32(w + l3 + 12);
                dst_lo[count] = be32(w + l3 + 16);
            } else {
                src_hi[count] = be64(w + l3 + 8);
                src_lo[count] = be64(w + l3 + 16);
                dst_hi[count] = be64(w + l3 + 24);
                dst_lo[count] = be64(w + l3 + 32);
            }
            count++;
        }
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < got; k++) PyBuffer_Release(&views[k]);
    PyBuffer_Release(&window);
    return failed ? NULL : PyLong_FromSsize_t(count);
}

/* -- group_tuples: a batch's packets grouped by canonical 4-tuple (analysis/census.py) -------
 *
 * census._Grouped's numpy work (a 64-bit hash per packet, a sort by it, a check for
 * collisions) in one pass with an exact hash table: each packet's tuple is put in
 * canonical order (endpoint "a" the lower of the two), looked up by its whole six numbers,
 * and the packets are then laid out group by group (a counting sort, so frame order is
 * kept within a group). Groups are numbered by first appearance. The hash of each group
 * is census._mix's, so the engine's table of tuples across batches is the same either way.
 *
 * group_tuples(src_hi, src_lo, sport, dst_hi, dst_lo, dport,      uint64[n] each (ports too)
 *              order, group_of_row, by_b,                        out: int64[n], int64[n], uint8[n]
 *              a_hi, a_lo, a_port, b_hi, b_lo, b_port, hashes)   out: uint64[n] each, first `groups`
 *   -> groups */

static uint64_t mix_tuple(const uint64_t key[6]) {
    uint64_t mix = 0;
    for (int k = 0; k < 6; k++) {
        mix = (mix ^ key[k]) * UINT64_C(0x100000001B3) + UINT64_C(0x9E3779B97F4A7C15);
        mix ^= mix >> 29;
    }
    return mix;
}

enum { G_SRC_HI, G_SRC_LO, G_SPORT, G_DST_HI, G_DST_LO, G_DPORT, G_ORDER, G_GROUP, G_BY_B, G_A_HI, G_A_LO, G_A_PORT,
       G_B_HI, G_B_LO, G_B_PORT, G_HASHES, G_COUNT };

static PyObject *group_tuples(PyObject *self, PyObject *args) {
    static const Py_ssize_t sizes[G_COUNT] = {8, 8, 8, 8, 8, 8, 8, 8, 1, 8, 8, 8, 8, 8, 8, 8};
    PyObject *objects[G_COUNT];
    Py_buffer views[G_COUNT];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOO", &objects[0], &objects[1], &objects[2], &objects[3], &objects[4],
                          &objects[5], &objects[6], &objects[7], &objects[8], &objects[9], &objects[10], &objects[11],
                          &objects[12], &objects[13], &objects[14], &objects[15]))
        return NULL;
    int got = 0, failed = 0;
    Py_ssize_t n = -1;
    for (; got < G_COUNT; got++) {
        int flags = got < G_ORDER ? PyBUF_C_CONTIGUOUS : PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE;
        if (PyObject_GetBuffer(objects[got], &views[got], flags) < 0) { failed = 1; break; }
        if (n < 0) n = views[got].len / sizes[got];
        if (views[got].itemsize != sizes[got] || views[got].ndim != 1 || views[got].shape[0] != n) {
            PyErr_Format(PyExc_ValueError, "group_tuples: argument %d: expected %zd items of %zd bytes", got, n,
                         sizes[got]);
            got++;
            failed = 1;
            break;
        }
    }
    size_t slots = 1024;
    while (!failed && slots < 2 * (size_t)n) slots *= 2;
    int64_t *table = failed ? NULL : malloc(slots * sizeof(int64_t));
    int64_t *group = failed ? NULL : malloc((n ? n : 1) * sizeof(int64_t));
    int64_t *fill = failed ? NULL : malloc((n + 1) * sizeof(int64_t));
    if (!failed && (!table || !group || !fill)) {
        PyErr_NoMemory();
        failed = 1;
    }
    Py_ssize_t groups = 0;
    if (!failed) {
        const uint64_t *in[6];
        for (int k = 0; k < 6; k++) in[k] = views[k].buf;
        uint64_t *keys[6];
        for (int k = 0; k < 6; k++) keys[k] = views[G_A_HI + k].buf;
        uint64_t *hashes = views[G_HASHES].buf;
        int64_t *order = views[G_ORDER].buf, *group_of_row = views[G_GROUP].buf;
        uint8_t *by_b = views[G_BY_B].buf;
        Py_BEGIN_ALLOW_THREADS
        memset(table, 0xFF, slots * sizeof(int64_t));
        memset(fill, 0, (n + 1) * sizeof(int64_t));
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t s0 = in[0][i], s1 = in[1][i], s2 = in[2][i], d0 = in[3][i], d1 = in[4][i], d2 = in[5][i];
            int from_a = s0 < d0 || (s0 == d0 && (s1 < d1 || (s1 == d1 && s2 <= d2)));
            uint64_t key[6];
            if (from_a) { key[0] = s0; key[1] = s1; key[2] = s2; key[3] = d0; key[4] = d1; key[5] = d2; }
            else { key[0] = d0; key[1] = d1; key[2] = d2; key[3] = s0; key[4] = s1; key[5] = s2; }
            by_b[i] = !from_a;
            uint64_t hash = mix_tuple(key);
            size_t slot = (size_t)(hash ^ (hash >> 32)) & (slots - 1);
            int64_t g;
            for (;;) {
                g = table[slot];
                if (g < 0) {
                    g = groups++;
                    table[slot] = g;
                    for (int k = 0; k < 6; k++) keys[k][g] = key[k];
                    hashes[g] = hash;
                    break;
                }
                if (hashes[g] == hash && keys[0][g] == key[0] && keys[1][g] == key[1] && keys[2][g] == key[2]
                    && keys[3][g] == key[3] && keys[4][g] == key[4] && keys[5][g] == key[5])
                    break;
                slot = (slot + 1) & (slots - 1);
            }
            group[i] = g;
            fill[g + 1]++;
        }
        for (Py_ssize_t g = 0; g < groups; g++) fill[g + 1] += fill[g];  /* where each group starts */
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t at = fill[group[i]]++;
            order[at] = i;
            group_of_row[at] = group[i];
        }
        Py_END_ALLOW_THREADS
    }
    free(table);
    free(group);
    free(fill);
    for (int k = 0; k < got; k++) PyBuffer_Release(&views[k]);
    return failed ? NULL : PyLong_FromSsize_t(groups);
}

static PyMethodDef methods[] = {
    {"format_rows", format_rows, METH_VARARGS, "format_rows(pieces, count, separator) -> bytes (see rows.py)"},
    {"walk_pcap", walk_pcap, METH_VARARGS,
     "walk_pcap(buffer, offset, stop, big_endian) -> (bytes of int64 record offsets, next offset)"},
    {"decode_tcp", decode_tcp, METH_VARARGS,
     "decode_tcp(window, start, caplen, ethertype_at, header, vlan_odd, ipv4_mark, rows, sport, dport, seq, ack, "
     "flags, payload, src_hi, src_lo, dst_hi, dst_lo) -> TCP frames written, or -1 (see pcap_columns.py)"},
    {"group_tuples", group_tuples, METH_VARARGS,
     "group_tuples(src_hi, src_lo, sport, dst_hi, dst_lo, dport, order, group_of_row, by_b, a_hi, a_lo, a_port, "
     "b_hi, b_lo, b_port, hashes) -> groups (see census.py)"},
    {"walk_pcapng", walk_pcapng, METH_VARARGS,
     "walk_pcapng(buffer, offset, stop, big_endian) -> (bytes of int64 EPB offsets, next offset)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups",
                                    "The optional compiled loops of tcpteardown (speedups.py).", -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
