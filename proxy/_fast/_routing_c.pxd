# C types for routing.py when Cython compiles it as proxy._fast._routing_c.
#
# Every class becomes an extension type whose attributes are C fields with the names and the
# Python-visible values of the twin (`public`: the table compiler, the data plane, health
# checking and tests read and set them as before). Fields read per request are typed, so the
# decide below reads them as C struct members; the steps of a decision are C methods.
cimport cython

cdef Py_ssize_t BUCKETS
cdef int EXACT, PREFIX, REGEX, PRESENT, ABSENT
cdef object _lookup_prefix, _hash_key

@cython.locals(key=object, value=object)
cpdef object header_value(object headers, object name)


@cython.final
cdef class EndpointGroup:
    cdef public object service, version, next
    cdef public Py_ssize_t version_id
    cdef public tuple endpoints


@cython.final
cdef class Target:
    cdef public object route_name, version_name, request_plan, response_plan
    cdef public object request_remove, response_remove
    cdef public bytes request_extra, response_extra
    cdef public Py_ssize_t route_id, version_id, stats_slot
    cdef public EndpointGroup group
    cdef public Target fallback

    cpdef Decision new_decision(self, object endpoint, object labels, object sticky_hash, object mirror)


# A decision takes part in no reference cycle (it refers to config objects, endpoints and a labels
# dict): no GC tracking; a freelist saves the allocation of most of them.
@cython.final
@cython.no_gc
@cython.freelist(64)
cdef class Decision:
    cdef public Target target
    cdef public object endpoint, labels, sticky_hash, mirror


@cython.locals(decision=Decision)
cdef Decision _decision(Target target, object endpoint, object labels, object sticky_hash, object mirror)


@cython.final
cdef class HeaderTest:
    cdef public bytes name
    cdef public int kind
    cdef public object operand

    @cython.locals(value=object)
    cpdef bint test(self, object headers) except -1


@cython.final
cdef class VersionChoice:
    cdef public tuple targets, rules, header_rules
    cdef public object table, sticky, rand, sticky_header, sticky_state
    cdef public Target constant, fixed
    cdef public bint needs_view

    cpdef tuple choose(self, object view)
    @cython.locals(tests=tuple, test=HeaderTest, target=Target, header=object)
    cpdef tuple choose_headers(self, object headers)
    @cython.locals(table=object, h=cython.ulonglong)  # a 64-bit hash: C arithmetic for the bucket
    cdef tuple _split(self, object key)


@cython.final
cdef class MirrorChoice:
    cdef public EndpointGroup group
    cdef public double probability
    cdef public object max_pending, rand

    @cython.locals(group=EndpointGroup, probability=double)
    cpdef object pick(self, Py_ssize_t version_id)


@cython.final
cdef class CompiledRoute:
    cdef public object name, service
    cdef public Py_ssize_t id
    cdef public tuple checks
    cdef public VersionChoice choice
    cdef public MirrorChoice mirror


cdef class Router:
    cdef public dict _exact, _nodes
    cdef public object _root, _view, _labels, stats
    cdef public bint uses_labels

    cpdef Decision decide(self, object req, object client_ip, object claims=*)
    cpdef tuple match(self, object req, object client_ip)
    cpdef Decision choose(self, CompiledRoute route, object view, object req, object client_ip, object claims=*)

    @cython.locals(route=CompiledRoute, checks=tuple, candidates=object, nodes=dict)
    cdef tuple _match(self, object req, object client_ip)
    @cython.locals(choice=VersionChoice, target=Target, chosen=tuple, mirror=MirrorChoice)
    cdef Decision _choose(self, CompiledRoute route, object view, object req, object client_ip, object claims)
    cdef Target _fallback(self, Target target)
