/* The per-record hashing loops of the ledger and of verification, compiled.
 *
 *   chain_hashes(prev, leaves)          -> n*32 bytes: chain_i = SHA-256(chain_{i-1} || leaf_i)
 *   extend(size, frontier, leaves)      -> (size + n, frontier'): RFC 6962 compact range
 *   split_pairs(pairs)                  -> (firsts, seconds): n*64 bytes cut into two n*32
 *
 * Hashes travel as one contiguous blob of n*32 bytes, never as n Python objects, so Python
 * pays a fixed cost per batch (DESIGN.md, "Hot paths"). The definitions are those of
 * aitrail.verify.hashes / aitrail.verify.merkle, which stay the reference; the wrapper
 * (native/__init__.py) checks its arguments first and raises TreeError, and this file checks
 * them again, raising ValueError, so a direct caller can never make it read out of bounds.
 *
 * SHA-256 is OpenSSL's libcrypto (SHA-NI where the CPU has it). The low-level
 * SHA256_Init/Update/Final are deprecated in OpenSSL 3 but skip the provider lookup that
 * makes EVP (and the SHA256() one-shot, which fetches the digest on every call) 1.3-4x
 * slower on 64-byte inputs; where a build of OpenSSL leaves them out, EVP is used instead.
 * The GIL is released while hashing: the buffers are pinned by the Py_buffer views.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_API_COMPAT 10101
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define HASH 32
#define MAX_LEVELS 64 /* a frontier holds one hash per set bit of a 64-bit size */

#ifdef OPENSSL_NO_DEPRECATED_3_0
typedef EVP_MD_CTX *hasher;
static const EVP_MD *sha256_md;
static int hasher_open(hasher *h) { *h = EVP_MD_CTX_new(); return *h != NULL; }
static void hasher_close(hasher *h) { EVP_MD_CTX_free(*h); }
static int sha256_2(hasher *h, const unsigned char *a, size_t na, const unsigned char *b,
                    size_t nb, const unsigned char *c, size_t nc, unsigned char *out)
{
    return EVP_DigestInit_ex(*h, sha256_md, NULL) && EVP_DigestUpdate(*h, a, na)
        && EVP_DigestUpdate(*h, b, nb) && (nc == 0 || EVP_DigestUpdate(*h, c, nc))
        && EVP_DigestFinal_ex(*h, out, NULL);
}
#else
typedef SHA256_CTX hasher;
static int hasher_open(hasher *h) { (void)h; return 1; }
static void hasher_close(hasher *h) { (void)h; }
static int sha256_2(hasher *h, const unsigned char *a, size_t na, const unsigned char *b,
                    size_t nb, const unsigned char *c, size_t nc, unsigned char *out)
{
    return SHA256_Init(h) && SHA256_Update(h, a, na) && SHA256_Update(h, b, nb)
        && (nc == 0 || SHA256_Update(h, c, nc)) && SHA256_Final(out, h);
}
#endif

static const unsigned char NODE_PREFIX[1] = {0x01};

/* SHA-256(0x01 || left || right); out may alias left or right. */
static int node_hash(hasher *h, const unsigned char *left, const unsigned char *right,
                     unsigned char *out)
{
    return sha256_2(h, NODE_PREFIX, 1, left, HASH, right, HASH, out);
}

static int check_blob(const Py_buffer *b, const char *what)
{
    if (b->len % HASH != 0) {
        PyErr_Format(PyExc_ValueError, "%s is %zd bytes, not a multiple of %d", what, b->len,
                     HASH);
        return 0;
    }
    return 1;
}

static PyObject *hash_failed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "OpenSSL's SHA-256 failed");
    return NULL;
}

PyDoc_STRVAR(chain_hashes_doc,
"chain_hashes(prev, leaves) -> bytes\n\n"
"leaves: n*32 bytes. Returns n*32 bytes, chain_i = SHA-256(chain_{i-1} || leaf_i),\n"
"chain_0's predecessor being prev (32 bytes).");

static PyObject *chain_hashes(PyObject *self, PyObject *args)
{
    Py_buffer prev, leaves;
    PyObject *out = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*:chain_hashes", &prev, &leaves))
        return NULL;
    if (prev.len != HASH) {
        PyErr_Format(PyExc_ValueError, "prev is %zd bytes, want %d", prev.len, HASH);
        goto done;
    }
    if (!check_blob(&leaves, "the leaves blob"))
        goto done;
    out = PyBytes_FromStringAndSize(NULL, leaves.len);
    if (out == NULL)
        goto done;
    {
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
        const unsigned char *src = leaves.buf, *last = prev.buf;
        Py_ssize_t n = leaves.len / HASH;
        int ok = 1;
        hasher h;
        Py_BEGIN_ALLOW_THREADS
        ok = hasher_open(&h);
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            ok = sha256_2(&h, last, HASH, src + i * HASH, HASH, NULL, 0, dst + i * HASH);
            last = dst + i * HASH;
        }
        hasher_close(&h);
        Py_END_ALLOW_THREADS
        if (!ok) {
            Py_CLEAR(out);
            hash_failed();
        }
    }
done:
    PyBuffer_Release(&prev);
    PyBuffer_Release(&leaves);
    return out;
}

PyDoc_STRVAR(extend_doc,
"extend(size, frontier, leaves) -> (size, frontier)\n\n"
"A compact range of `size` leaves, its frontier (one 32-byte hash per set bit of size,\n"
"largest subtree first, concatenated), extended by the n*32-byte leaves blob: what\n"
"aitrail.verify.merkle.CompactRange.extend gives, RFC 6962 node hashes.");

static PyObject *extend(PyObject *self, PyObject *args)
{
    PyObject *size_obj, *result = NULL;
    Py_buffer frontier, leaves;
    unsigned long long size;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!y*y*:extend", &PyLong_Type, &size_obj, &frontier, &leaves))
        return NULL;
    {
        /* Not the "K" converter: it wraps a negative or oversized int around silently. */
        int overflow;
        long long signed_size = PyLong_AsLongLongAndOverflow(size_obj, &overflow);
        if (signed_size == -1 && PyErr_Occurred())
            goto done;
        if (overflow || signed_size < 0) {
            PyErr_SetString(PyExc_ValueError, "tree size is negative or beyond 2**63 - 1");
            goto done;
        }
        size = (unsigned long long)signed_size;
    }
    if (!check_blob(&frontier, "the frontier") || !check_blob(&leaves, "the leaves blob"))
        goto done;
    Py_ssize_t k = frontier.len / HASH, n = leaves.len / HASH;
    if ((size_t)k != (size_t)__builtin_popcountll(size)) {
        PyErr_Format(PyExc_ValueError, "a compact range of size %llu has %d hashes, got %zd",
                     size, __builtin_popcountll(size), k);
        goto done;
    }
    if (size > (unsigned long long)INT64_MAX - (unsigned long long)n) {
        PyErr_Format(PyExc_ValueError, "tree size %llu + %zd leaves overflows", size, n);
        goto done;
    }
    {
        /* One slot more than a 63-bit size can need: the carry lands before the pops. */
        unsigned char stack[(MAX_LEVELS + 1) * HASH];
        Py_ssize_t top = k;
        const unsigned char *src = leaves.buf;
        int ok;
        hasher h;
        memcpy(stack, frontier.buf, (size_t)k * HASH);
        Py_BEGIN_ALLOW_THREADS
        ok = hasher_open(&h);
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            /* Each trailing 1 bit of the size is a perfect subtree as high as the one being
             * carried: merge with it, like incrementing a binary counter. */
            unsigned char *slot = stack + top * HASH;
            unsigned long long s = size;
            if (!(s & 1)) {
                memcpy(slot, src + i * HASH, HASH);
            } else {
                top--;
                slot -= HASH;
                ok = node_hash(&h, slot, src + i * HASH, slot);
                s >>= 1;
                while (ok && (s & 1)) {
                    top--;
                    slot -= HASH;
                    ok = node_hash(&h, slot, slot + HASH, slot);
                    s >>= 1;
                }
            }
            top++;
            size++;
        }
        hasher_close(&h);
        Py_END_ALLOW_THREADS
        if (!ok) {
            hash_failed();
            goto done;
        }
        result = Py_BuildValue("(Ky#)", size, (const char *)stack, top * HASH);
    }
done:
    PyBuffer_Release(&frontier);
    PyBuffer_Release(&leaves);
    return result;
}

PyDoc_STRVAR(split_pairs_doc,
"split_pairs(pairs) -> (firsts, seconds)\n\n"
"pairs: n*64 bytes, n pairs of 32-byte hashes back to back (the engine's RawBLOB of two\n"
"hash columns). Returns the n first hashes and the n second hashes, n*32 bytes each.");

static PyObject *split_pairs(PyObject *self, PyObject *args)
{
    Py_buffer pairs;
    PyObject *firsts = NULL, *seconds = NULL, *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*:split_pairs", &pairs))
        return NULL;
    if (pairs.len % (2 * HASH) != 0) {
        PyErr_Format(PyExc_ValueError, "the pairs blob is %zd bytes, not a multiple of %d",
                     pairs.len, 2 * HASH);
        goto done;
    }
    firsts = PyBytes_FromStringAndSize(NULL, pairs.len / 2);
    seconds = PyBytes_FromStringAndSize(NULL, pairs.len / 2);
    if (firsts == NULL || seconds == NULL)
        goto done;
    {
        unsigned char *a = (unsigned char *)PyBytes_AS_STRING(firsts);
        unsigned char *b = (unsigned char *)PyBytes_AS_STRING(seconds);
        const unsigned char *src = pairs.buf;
        Py_ssize_t n = pairs.len / (2 * HASH);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(a + i * HASH, src + 2 * i * HASH, HASH);
            memcpy(b + i * HASH, src + (2 * i + 1) * HASH, HASH);
        }
        Py_END_ALLOW_THREADS
    }
    result = PyTuple_Pack(2, firsts, seconds);
done:
    Py_XDECREF(firsts);
    Py_XDECREF(seconds);
    PyBuffer_Release(&pairs);
    return result;
}

static PyMethodDef methods[] = {
    {"chain_hashes", chain_hashes, METH_VARARGS, chain_hashes_doc},
    {"extend", extend, METH_VARARGS, extend_doc},
    {"split_pairs", split_pairs, METH_VARARGS, split_pairs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hashing",
    "SHA-256 chain and RFC 6962 compact-range loops over 32-byte hash blobs (OpenSSL).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hashing(void)
{
#ifdef OPENSSL_NO_DEPRECATED_3_0
    sha256_md = EVP_sha256();
#endif
    return PyModule_Create(&module);
}
