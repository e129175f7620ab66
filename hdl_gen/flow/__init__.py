"""The board flow: everything between the chip's generated design and a bitstream on a board
(boards, build, report). The chip's blocks live in :mod:`hdl_gen`; this subpackage imports them
and is never imported by them."""
