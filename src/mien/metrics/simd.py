"""SIMD vectors as numba values, for kernels that keep their working set in vector registers
(:mod:`mien.metrics.dtw`).

numba's loop vectoriser only vectorises loops over arrays: a value carried from one iteration of a loop to the
next (a DTW's running cell) then lives in memory, and each step pays a store and a reload; scalar locals stay in
registers but are not packed into vectors. :class:`Vec` is an LLVM vector (``<n x double>``, ``<n x i16>``…)
as a numba type, so a kernel can hold a vector of lanes in a local variable across loop iterations. Operations
(each one LLVM instruction, exact IEEE / two's-complement per lane, nothing reassociated or fused):

- ``vload(a, i, n)``: the n elements ``a.flat[i:i + n]`` of a C-contiguous array (no bounds check);
- ``vstore(a, i, v)``: writes v to ``a.flat[i:i + n]``;
- ``vsplat(x, n)``: x in all n lanes (the vector's dtype is x's);
- ``v + w``, ``v - w``, ``v * w``, ``v ^ w`` (integers) on vectors of one type; ``vmin(v, w)``: per lane
  ``v < w ? v : w`` (for floats without NaN the IEEE minimum); ``vpopcount(v)``: set bits per lane.

Typed by numba, compiled by LLVM for the host CPU (AVX-512, AVX2 or SSE as present); ``vpopcount`` is one
instruction where the CPU has a vector popcount (AVX-512 BITALG/VPOPCNTDQ), a few otherwise.
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

__all__ = ["Vec", "vload", "vmin", "vpopcount", "vsplat", "vstore"]


class Vec(types.Type):
    """numba type of an LLVM vector of ``n`` lanes of the numba scalar type ``dtype``."""

    def __init__(self, dtype: types.Type, n: int):
        self.dtype, self.n = dtype, int(n)
        super().__init__(name=f"Vec({dtype}, {n})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.n))


def _literal_int(n) -> int | None:
    return n.literal_value if isinstance(n, types.IntegerLiteral) else None


def _pointer(context, builder, arr_type, arr, index, index_type, vec_type):
    """Pointer to ``arr.flat[index]`` as a pointer to the LLVM vector type of ``vec_type``."""
    data = context.make_array(arr_type)(context, builder, arr).data
    i = context.cast(builder, index, index_type, types.intp)
    return builder.bitcast(builder.gep(data, [i]), context.get_value_type(vec_type).as_pointer())


@intrinsic
def vload(typingctx, arr, i, n):
    """``vload(arr, i, n)`` in numba-compiled code: lanes ``arr.flat[i:i + n]`` as one :class:`Vec` of ``n`` (a literal
    int) lanes of ``arr``'s dtype; ``arr`` C-contiguous, no bounds check. Other argument types: numba TypingError
    at compile time."""
    if not (isinstance(arr, types.Array) and arr.layout == "C" and isinstance(i, types.Integer)
            and _literal_int(n)):
        return None
    vt = Vec(arr.dtype, _literal_int(n))

    def codegen(context, builder, sig, args):
        return builder.load(_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1], vt), align=1)

    return vt(arr, i, n), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    """``vstore(arr, i, v)`` in numba-compiled code: writes the lanes of ``v`` (a :class:`Vec` of ``arr``'s dtype) to
    ``arr.flat[i:i + n]``; ``arr`` C-contiguous, no bounds check. Other argument types: numba TypingError."""
    if not (isinstance(arr, types.Array) and arr.layout == "C" and isinstance(i, types.Integer)
            and isinstance(v, Vec) and v.dtype == arr.dtype):
        return None

    def codegen(context, builder, sig, args):
        builder.store(args[2], _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1], v), align=1)
        return context.get_dummy_value()

    return types.none(arr, i, v), codegen


@intrinsic
def vsplat(typingctx, x, n):
    """``vsplat(x, n)`` in numba-compiled code: the scalar ``x`` (int or float) in all ``n`` (a literal int) lanes of
    a :class:`Vec` of its type. Other argument types: numba TypingError."""
    if not (isinstance(x, (types.Integer, types.Float)) and _literal_int(n)):
        return None
    dtype = x.literal_type if isinstance(x, types.Literal) else x
    vt = Vec(dtype, _literal_int(n))

    def codegen(context, builder, sig, args):
        lt = context.get_value_type(vt)
        one = builder.insert_element(ir.Constant(lt, ir.Undefined), context.cast(builder, args[0], sig.args[0], dtype),
                                     ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(lt, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32),
                                                                                                    vt.n), [0] * vt.n))

    return vt(x, n), codegen


def _same(a, b) -> bool:
    return isinstance(a, Vec) and a == b


def _binary(float_op: str | None, int_op: str):
    @intrinsic
    def op(typingctx, a, b):
        is_float = isinstance(getattr(a, "dtype", None), types.Float)
        if not _same(a, b) or (is_float and float_op is None):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, float_op if is_float else int_op)(*args)

        return a(a, b), codegen

    return op


def _overload(python_operator, op) -> None:
    @overload(python_operator)
    def _impl(a, b):
        if _same(a, b):
            return lambda a, b: op(a, b)


for _operator, _op in [(operator.add, _binary("fadd", "add")), (operator.sub, _binary("fsub", "sub")),
                       (operator.mul, _binary("fmul", "mul")), (operator.xor, _binary(None, "xor"))]:
    _overload(_operator, _op)


@intrinsic
def vmin(typingctx, a, b):
    """``vmin(a, b)`` in numba-compiled code: lane-wise minimum of two :class:`Vec` of the same type (floats: ordered
    compare, so a NaN in ``a`` gives ``b``'s lane; ints: signed or unsigned as the dtype). Other types: TypingError."""
    if not _same(a, b):
        return None

    def codegen(context, builder, sig, args):
        x, y = args
        less = (builder.fcmp_ordered("<", x, y) if isinstance(a.dtype, types.Float)
                else builder.icmp_signed("<", x, y) if a.dtype.signed else builder.icmp_unsigned("<", x, y))
        return builder.select(less, x, y)

    return a(a, b), codegen


@intrinsic
def vpopcount(typingctx, a):
    """``vpopcount(a)`` in numba-compiled code: lane-wise count of set bits of an integer :class:`Vec` (same type).
    Other types: numba TypingError."""
    if not (isinstance(a, Vec) and isinstance(a.dtype, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        lt = args[0].type
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lt, [lt]),
                                            f"llvm.ctpop.v{lt.count}i{lt.element.width}")
        return builder.call(fn, [args[0]])

    return a(a), codegen
