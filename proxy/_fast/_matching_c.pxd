# C types for matching.py when Cython compiles it as proxy._fast._matching_c.
cimport cython

@cython.locals(end=Py_ssize_t, start=Py_ssize_t, cut=Py_ssize_t)
cpdef object lookup_prefix(dict nodes, bytes path, object root)

cpdef object first_value(object headers, object name)

cpdef bint has_path_prefix(bytes path, bytes prefix)

@cython.locals(close=Py_ssize_t, colon=Py_ssize_t)
cpdef bytes normalize_host(bytes host)

@cython.locals(cookies=dict, piece=bytes, name=bytes, value=bytes, eq=Py_ssize_t)
cpdef dict parse_cookies(bytes header)

@cython.locals(params=dict, piece=bytes, name=bytes, value=bytes, eq=Py_ssize_t)
cpdef dict parse_query(bytes query)
