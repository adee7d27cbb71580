# C types for hashing.py when Cython compiles it as proxy._fast._hashing_c.
# unsigned long long arithmetic wraps modulo 2**64, which is what the Python twin's
# "& MASK64" computes; the mask is then a no-op the C compiler removes.
cimport cython

@cython.locals(byte=cython.uchar, prime=cython.ulonglong, mask=cython.ulonglong)
cpdef unsigned long long fnv1a64(bytes data, unsigned long long h=*)

@cython.locals(c1=cython.ulonglong, c2=cython.ulonglong, mask=cython.ulonglong)
cpdef unsigned long long fmix64(unsigned long long k)

cpdef unsigned long long salted_state(bytes salt)

cpdef unsigned long long hash_key(unsigned long long state, bytes key)

cpdef unsigned long long stable_hash(bytes salt, bytes key)
