;; f32 matrix multiply for webseq's CPU backend: C[M, N] = A[M, K] · B[K, N];
;; and, at the end of the file, GELU, SiLU and their gradients, the cross-entropy row
;; kernels, attention forward and backward and the matmul path's softmax rows, the AdamW
;; update, dropout and its keep mask, bias rows and column sums, LayerNorm forward and
;; backward. The export `task` runs one task of any of them as one thread.
;;
;; Operands are addressed through element strides, so one kernel serves all
;; four transpose combinations: A(m, k) is at a + 4·(m·ars + k·acs) and
;; B(k, n) at b + 4·(k·brs + n·bcs). C(m, n) is at c + 4·(m·ldc + n), so a
;; caller can hand each thread a block of rows or of columns of one C.
;;
;; Blocking (GotoBLAS order): for each NC-wide column block of B and KC-deep
;; slice of K, B is packed into 8-column panels [KC, 8]; for each MC-tall row
;; block of A, A is packed into 6-row panels [KC, 6]; the micro-kernel then
;; computes every 6×8 tile of C with twelve f32x4 accumulators, two k per
;; iteration, adding into C for every K slice after the first. Panels are
;; zero-padded past M and N, and by one zero k when the slice is odd, so the
;; micro-kernel always runs a full tile and only its store is clipped.
;;
;; Memory layout (chosen by the caller): A, B, C, two pack buffers and 192
;; bytes of scratch for clipped tiles; the pack buffers and the scratch are
;; per thread.
;;
;; tools/wasm/build.ts assembles this file four times: as is (f32x4.relaxed_madd,
;; a fused multiply-add where the CPU has one) and with every relaxed_madd
;; rewritten to f32x4.mul + f32x4.add for engines without relaxed SIMD, each
;; with its own memory and with an imported shared memory (for threads).
(module
  (memory (export "memory") 1)

  ;; Copies 16 bytes per column k < kc: from src + k·sstride to dst + k·dstride.
  (func $copy4 (param $src i32) (param $sstride i32) (param $kc i32) (param $dst i32)
    (param $dstride i32)
    (loop $k
      (v128.store (local.get $dst) (v128.load (local.get $src)))
      (local.set $src (i32.add (local.get $src) (local.get $sstride)))
      (local.set $dst (i32.add (local.get $dst) (local.get $dstride)))
      (br_if $k (local.tee $kc (i32.sub (local.get $kc) (i32.const 1))))))

  ;; Transposes four rows (row r at src + r·rstride, kc contiguous floats each) into
  ;; dst: the four floats of column k land at dst + k·dstride.
  (func $tr4 (param $src i32) (param $rstride i32) (param $kc i32) (param $dst i32)
    (param $dstride i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local $r1 i32) (local $r2 i32) (local $r3 i32) (local $d4 i32)
    (local.set $r1 (i32.add (local.get $src) (local.get $rstride)))
    (local.set $r2 (i32.add (local.get $r1) (local.get $rstride)))
    (local.set $r3 (i32.add (local.get $r2) (local.get $rstride)))
    (local.set $d4 (i32.shl (local.get $dstride) (i32.const 2)))
    (block $tail
      (loop $quad
        (br_if $tail (i32.lt_u (local.get $kc) (i32.const 4)))
        (local.set $x0 (v128.load (local.get $src)))
        (local.set $x1 (v128.load (local.get $r1)))
        (local.set $x2 (v128.load (local.get $r2)))
        (local.set $x3 (v128.load (local.get $r3)))
        ;; t0 = x0[0] x1[0] x0[1] x1[1], t1 = x2[0] x3[0] x2[1] x3[1], t2/t3 the same for lanes 2, 3
        (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23
          (local.get $x0) (local.get $x1)))
        (local.set $t1 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23
          (local.get $x2) (local.get $x3)))
        (local.set $t2 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31
          (local.get $x0) (local.get $x1)))
        (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31
          (local.get $x2) (local.get $x3)))
        (v128.store (local.get $dst) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (local.get $t0) (local.get $t1)))
        (local.set $dst (i32.add (local.get $dst) (local.get $dstride)))
        (v128.store (local.get $dst) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31
          (local.get $t0) (local.get $t1)))
        (local.set $dst (i32.add (local.get $dst) (local.get $dstride)))
        (v128.store (local.get $dst) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (local.get $t2) (local.get $t3)))
        (local.set $dst (i32.add (local.get $dst) (local.get $dstride)))
        (v128.store (local.get $dst) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31
          (local.get $t2) (local.get $t3)))
        (local.set $dst (i32.add (local.get $dst) (local.get $dstride)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $r1 (i32.add (local.get $r1) (i32.const 16)))
        (local.set $r2 (i32.add (local.get $r2) (i32.const 16)))
        (local.set $r3 (i32.add (local.get $r3) (i32.const 16)))
        (local.set $kc (i32.sub (local.get $kc) (i32.const 4)))
        (br $quad)))
    ;; the last kc % 4 columns, one float per row
    (block $done
      (loop $one
        (br_if $done (i32.eqz (local.get $kc)))
        (f32.store offset=0 (local.get $dst) (f32.load (local.get $src)))
        (f32.store offset=4 (local.get $dst) (f32.load (local.get $r1)))
        (f32.store offset=8 (local.get $dst) (f32.load (local.get $r2)))
        (f32.store offset=12 (local.get $dst) (f32.load (local.get $r3)))
        (local.set $dst (i32.add (local.get $dst) (local.get $dstride)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $r1 (i32.add (local.get $r1) (i32.const 4)))
        (local.set $r2 (i32.add (local.get $r2) (i32.const 4)))
        (local.set $r3 (i32.add (local.get $r3) (i32.const 4)))
        (local.set $kc (i32.sub (local.get $kc) (i32.const 1)))
        (br $one))))

  ;; Packs rows r0 .. r0+rn-1 and columns k0 .. k0+kc-1 of X, where X(r, k) is at
  ;; src + 4·(r·rs + k·cs), into panels of w rows (w = 6 or 8) and kp columns (kc rounded up
  ;; to a multiple of 4): panel p holds dst[p·w·kp + k·w + i] = X(r0 + p·w + i, k0 + k), zero
  ;; for rows past r0+rn-1 and for the padding columns k ≥ kc. A is packed with (rs, cs) = (ars, acs),
  ;; B with (rs, cs) = (bcs, brs).
  (func $pack (param $src i32) (param $rs i32) (param $cs i32) (param $r0 i32) (param $rn i32)
    (param $k0 i32) (param $kc i32) (param $w i32) (param $dst i32)
    (local $r i32) (local $rend i32) (local $h i32) (local $ws i32) (local $at i32)
    (local.set $rend (i32.add (local.get $r0) (local.get $rn)))
    (local.set $ws (i32.shl (local.get $w) (i32.const 2)))
    (local.set $r (local.get $r0))
    (block $done
      (loop $panel
        (br_if $done (i32.ge_u (local.get $r) (local.get $rend)))
        (local.set $h (i32.const 0))
        (if (i32.le_u (i32.add (local.get $r) (local.get $w)) (local.get $rend))
          (then
            ;; a full panel: four rows at a time where a stride is 1, the rest one by one
            (block $groups
              (loop $group
                (br_if $groups (i32.gt_u (i32.add (local.get $h) (i32.const 4)) (local.get $w)))
                (if (i32.eq (local.get $rs) (i32.const 1))
                  (then
                    ;; the rows of one column are contiguous: copy 4 floats per column
                    (call $copy4
                      (i32.add (local.get $src) (i32.shl
                        (i32.add (i32.add (local.get $r) (local.get $h))
                          (i32.mul (local.get $k0) (local.get $cs)))
                        (i32.const 2)))
                      (i32.shl (local.get $cs) (i32.const 2))
                      (local.get $kc)
                      (i32.add (local.get $dst) (i32.shl (local.get $h) (i32.const 2)))
                      (local.get $ws)))
                  (else (if (i32.eq (local.get $cs) (i32.const 1))
                    (then
                      ;; each row is contiguous over k: transpose 4 rows at a time
                      (call $tr4
                        (i32.add (local.get $src) (i32.shl
                          (i32.add
                            (i32.mul (i32.add (local.get $r) (local.get $h)) (local.get $rs))
                            (local.get $k0))
                          (i32.const 2)))
                        (i32.shl (local.get $rs) (i32.const 2))
                        (local.get $kc)
                        (i32.add (local.get $dst) (i32.shl (local.get $h) (i32.const 2)))
                        (local.get $ws)))
                    (else (br $groups)))))
                (local.set $h (i32.add (local.get $h) (i32.const 4)))
                (br $group)))))
        (if (i32.lt_u (local.get $h) (local.get $w))
          (then (call $gather (local.get $src) (local.get $rs) (local.get $cs)
            (i32.add (local.get $r) (local.get $h)) (i32.sub (local.get $w) (local.get $h))
            (local.get $rend) (local.get $k0) (local.get $kc)
            (i32.add (local.get $dst) (i32.shl (local.get $h) (i32.const 2))) (local.get $ws))))
        (local.set $at (i32.add (local.get $dst) (i32.mul (local.get $ws) (local.get $kc))))
        ;; zero columns up to kp (kc rounded up to a multiple of 4)
        (local.set $h (i32.and (i32.sub (i32.const 0) (local.get $kc)) (i32.const 3)))
        (if (local.get $h)
          (then
            (memory.fill (local.get $at) (i32.const 0) (i32.mul (local.get $h) (local.get $ws)))
            (local.set $at (i32.add (local.get $at) (i32.mul (local.get $h) (local.get $ws))))))
        (local.set $dst (local.get $at))
        (local.set $r (i32.add (local.get $r) (local.get $w)))
        (br $panel))))

  ;; Packs rows r .. r+n-1 of X (as in $pack) one float at a time: X(r + i, k0 + k) goes to
  ;; dst + k·dstride + 4·i, zero for rows at or past rend.
  (func $gather (param $src i32) (param $rs i32) (param $cs i32) (param $r i32) (param $n i32)
    (param $rend i32) (param $k0 i32) (param $kc i32) (param $dst i32) (param $dstride i32)
    (local $k i32) (local $i i32) (local $kend i32)
    (local.set $k (local.get $k0))
    (local.set $kend (i32.add (local.get $k0) (local.get $kc)))
    (loop $col
      (local.set $i (i32.const 0))
      (loop $row
        (f32.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (if (result f32) (i32.lt_u (i32.add (local.get $r) (local.get $i)) (local.get $rend))
            (then (f32.load (i32.add (local.get $src) (i32.shl
              (i32.add
                (i32.mul (i32.add (local.get $r) (local.get $i)) (local.get $rs))
                (i32.mul (local.get $k) (local.get $cs)))
              (i32.const 2)))))
            (else (f32.const 0))))
        (br_if $row (i32.lt_u
          (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
      (local.set $dst (i32.add (local.get $dst) (local.get $dstride)))
      (br_if $col (i32.lt_u
        (local.tee $k (i32.add (local.get $k) (i32.const 1))) (local.get $kend)))))

  ;; Rewrites the n floats at p as n 16-byte splats (float i → bytes 16·i .. 16·i+15), from the
  ;; last so that no float is overwritten before it is read: the A panels of $tile.
  (func $widen (param $p i32) (param $n i32)
    (local $src i32) (local $dst i32)
    (local.set $src (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $dst (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 4))))
    (block $done
      (loop $each
        (br_if $done (i32.le_u (local.get $src) (local.get $p)))
        (local.set $src (i32.sub (local.get $src) (i32.const 4)))
        (local.set $dst (i32.sub (local.get $dst) (i32.const 16)))
        (v128.store (local.get $dst) (v128.load32_splat (local.get $src)))
        (br $each))))

  ;; The 6×8 micro-kernel: tile = pa[4·n4, 6]ᵀ · pb[4·n4, 8], written to the mr×nr corner
  ;; of C at c (row stride ldc bytes), added to what is there when acc ≠ 0; scr is the
  ;; 192-byte scratch of clipped tiles. pa holds each A value as a 16-byte splat ($widen), so
  ;; the loop loads whole vectors (v128.load32_splat cost more), four k per iteration; each
  ;; accumulator still sums k in order.
  (func $tile (param $pa i32) (param $pb i32) (param $n4 i32) (param $c i32) (param $ldc i32)
    (param $acc i32) (param $mr i32) (param $nr i32) (param $scr i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local $c40 v128) (local $c41 v128) (local $c50 v128) (local $c51 v128)
    (local $i i32) (local $j i32) (local $p i32)
    (loop $k
      (local.set $b0 (v128.load offset=0 (local.get $pb)))
      (local.set $b1 (v128.load offset=16 (local.get $pb)))
      (local.set $a (v128.load offset=0 (local.get $pa)))
      (local.set $c00 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c00)))
      (local.set $c01 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c01)))
      (local.set $a (v128.load offset=16 (local.get $pa)))
      (local.set $c10 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c10)))
      (local.set $c11 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c11)))
      (local.set $a (v128.load offset=32 (local.get $pa)))
      (local.set $c20 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c20)))
      (local.set $c21 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c21)))
      (local.set $a (v128.load offset=48 (local.get $pa)))
      (local.set $c30 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c30)))
      (local.set $c31 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c31)))
      (local.set $a (v128.load offset=64 (local.get $pa)))
      (local.set $c40 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c40)))
      (local.set $c41 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c41)))
      (local.set $a (v128.load offset=80 (local.get $pa)))
      (local.set $c50 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c50)))
      (local.set $c51 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c51)))
      (local.set $b0 (v128.load offset=32 (local.get $pb)))
      (local.set $b1 (v128.load offset=48 (local.get $pb)))
      (local.set $a (v128.load offset=96 (local.get $pa)))
      (local.set $c00 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c00)))
      (local.set $c01 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c01)))
      (local.set $a (v128.load offset=112 (local.get $pa)))
      (local.set $c10 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c10)))
      (local.set $c11 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c11)))
      (local.set $a (v128.load offset=128 (local.get $pa)))
      (local.set $c20 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c20)))
      (local.set $c21 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c21)))
      (local.set $a (v128.load offset=144 (local.get $pa)))
      (local.set $c30 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c30)))
      (local.set $c31 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c31)))
      (local.set $a (v128.load offset=160 (local.get $pa)))
      (local.set $c40 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c40)))
      (local.set $c41 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c41)))
      (local.set $a (v128.load offset=176 (local.get $pa)))
      (local.set $c50 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c50)))
      (local.set $c51 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c51)))
      (local.set $b0 (v128.load offset=64 (local.get $pb)))
      (local.set $b1 (v128.load offset=80 (local.get $pb)))
      (local.set $a (v128.load offset=192 (local.get $pa)))
      (local.set $c00 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c00)))
      (local.set $c01 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c01)))
      (local.set $a (v128.load offset=208 (local.get $pa)))
      (local.set $c10 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c10)))
      (local.set $c11 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c11)))
      (local.set $a (v128.load offset=224 (local.get $pa)))
      (local.set $c20 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c20)))
      (local.set $c21 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c21)))
      (local.set $a (v128.load offset=240 (local.get $pa)))
      (local.set $c30 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c30)))
      (local.set $c31 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c31)))
      (local.set $a (v128.load offset=256 (local.get $pa)))
      (local.set $c40 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c40)))
      (local.set $c41 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c41)))
      (local.set $a (v128.load offset=272 (local.get $pa)))
      (local.set $c50 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c50)))
      (local.set $c51 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c51)))
      (local.set $b0 (v128.load offset=96 (local.get $pb)))
      (local.set $b1 (v128.load offset=112 (local.get $pb)))
      (local.set $a (v128.load offset=288 (local.get $pa)))
      (local.set $c00 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c00)))
      (local.set $c01 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c01)))
      (local.set $a (v128.load offset=304 (local.get $pa)))
      (local.set $c10 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c10)))
      (local.set $c11 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c11)))
      (local.set $a (v128.load offset=320 (local.get $pa)))
      (local.set $c20 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c20)))
      (local.set $c21 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c21)))
      (local.set $a (v128.load offset=336 (local.get $pa)))
      (local.set $c30 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c30)))
      (local.set $c31 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c31)))
      (local.set $a (v128.load offset=352 (local.get $pa)))
      (local.set $c40 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c40)))
      (local.set $c41 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c41)))
      (local.set $a (v128.load offset=368 (local.get $pa)))
      (local.set $c50 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c50)))
      (local.set $c51 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c51)))
      (local.set $pa (i32.add (local.get $pa) (i32.const 384)))
      (local.set $pb (i32.add (local.get $pb) (i32.const 128)))
      (br_if $k (local.tee $n4 (i32.sub (local.get $n4) (i32.const 1)))))
    (if (i32.and (i32.eq (local.get $mr) (i32.const 6)) (i32.eq (local.get $nr) (i32.const 8)))
      (then
        (if (local.get $acc)
          (then
            (local.set $p (local.get $c))
            (local.set $c00 (f32x4.add (local.get $c00) (v128.load offset=0 (local.get $p))))
            (local.set $c01 (f32x4.add (local.get $c01) (v128.load offset=16 (local.get $p))))
            (local.set $p (i32.add (local.get $p) (local.get $ldc)))
            (local.set $c10 (f32x4.add (local.get $c10) (v128.load offset=0 (local.get $p))))
            (local.set $c11 (f32x4.add (local.get $c11) (v128.load offset=16 (local.get $p))))
            (local.set $p (i32.add (local.get $p) (local.get $ldc)))
            (local.set $c20 (f32x4.add (local.get $c20) (v128.load offset=0 (local.get $p))))
            (local.set $c21 (f32x4.add (local.get $c21) (v128.load offset=16 (local.get $p))))
            (local.set $p (i32.add (local.get $p) (local.get $ldc)))
            (local.set $c30 (f32x4.add (local.get $c30) (v128.load offset=0 (local.get $p))))
            (local.set $c31 (f32x4.add (local.get $c31) (v128.load offset=16 (local.get $p))))
            (local.set $p (i32.add (local.get $p) (local.get $ldc)))
            (local.set $c40 (f32x4.add (local.get $c40) (v128.load offset=0 (local.get $p))))
            (local.set $c41 (f32x4.add (local.get $c41) (v128.load offset=16 (local.get $p))))
            (local.set $p (i32.add (local.get $p) (local.get $ldc)))
            (local.set $c50 (f32x4.add (local.get $c50) (v128.load offset=0 (local.get $p))))
            (local.set $c51 (f32x4.add (local.get $c51) (v128.load offset=16 (local.get $p))))))
        (v128.store offset=0 (local.get $c) (local.get $c00))
        (v128.store offset=16 (local.get $c) (local.get $c01))
        (local.set $c (i32.add (local.get $c) (local.get $ldc)))
        (v128.store offset=0 (local.get $c) (local.get $c10))
        (v128.store offset=16 (local.get $c) (local.get $c11))
        (local.set $c (i32.add (local.get $c) (local.get $ldc)))
        (v128.store offset=0 (local.get $c) (local.get $c20))
        (v128.store offset=16 (local.get $c) (local.get $c21))
        (local.set $c (i32.add (local.get $c) (local.get $ldc)))
        (v128.store offset=0 (local.get $c) (local.get $c30))
        (v128.store offset=16 (local.get $c) (local.get $c31))
        (local.set $c (i32.add (local.get $c) (local.get $ldc)))
        (v128.store offset=0 (local.get $c) (local.get $c40))
        (v128.store offset=16 (local.get $c) (local.get $c41))
        (local.set $c (i32.add (local.get $c) (local.get $ldc)))
        (v128.store offset=0 (local.get $c) (local.get $c50))
        (v128.store offset=16 (local.get $c) (local.get $c51))
        (return)))
    ;; clipped tile: spill the accumulators to scratch [6, 8] at scr, copy mr×nr of it
    (v128.store offset=0 (local.get $scr) (local.get $c00))
    (v128.store offset=16 (local.get $scr) (local.get $c01))
    (v128.store offset=32 (local.get $scr) (local.get $c10))
    (v128.store offset=48 (local.get $scr) (local.get $c11))
    (v128.store offset=64 (local.get $scr) (local.get $c20))
    (v128.store offset=80 (local.get $scr) (local.get $c21))
    (v128.store offset=96 (local.get $scr) (local.get $c30))
    (v128.store offset=112 (local.get $scr) (local.get $c31))
    (v128.store offset=128 (local.get $scr) (local.get $c40))
    (v128.store offset=144 (local.get $scr) (local.get $c41))
    (v128.store offset=160 (local.get $scr) (local.get $c50))
    (v128.store offset=176 (local.get $scr) (local.get $c51))
    (local.set $i (i32.const 0))
    (loop $row
      (local.set $j (i32.const 0))
      (loop $col
        (local.set $p (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2))))
        (f32.store (local.get $p) (f32.add
          (f32.load (i32.add (local.get $scr) (i32.shl
            (i32.add (i32.shl (local.get $i) (i32.const 3)) (local.get $j)) (i32.const 2))))
          (if (result f32) (local.get $acc)
            (then (f32.load (local.get $p)))
            (else (f32.const 0)))))
        (br_if $col (i32.lt_u
          (local.tee $j (i32.add (local.get $j) (i32.const 1))) (local.get $nr))))
      (local.set $c (i32.add (local.get $c) (local.get $ldc)))
      (br_if $row (i32.lt_u
        (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $mr)))))

  ;; C = A · B for M, N, K ≥ 1 (see the top of the file for the addressing). pa and pb are
  ;; pack buffers of 4·mc·kp (A, widened) and kp·nc floats (kp = kc rounded up to a multiple
  ;; of 4); mc must be a
  ;; multiple of 6 and nc of 8; scr is 192 bytes of scratch. With pre ≠ 0, B is already
  ;; packed there, block after block in this loop's order ($prepack): b and pb go unused.
  (func $gemm (export "gemm")
    (param $a i32) (param $ars i32) (param $acs i32)
    (param $b i32) (param $brs i32) (param $bcs i32)
    (param $c i32) (param $M i32) (param $N i32) (param $K i32)
    (param $pa i32) (param $pb i32) (param $mc i32) (param $nc i32) (param $kc i32)
    (param $ldc i32) (param $scr i32) (param $pre i32)
    (local $jc i32) (local $pc i32) (local $ic i32) (local $jr i32) (local $ir i32)
    (local $nn i32) (local $kk i32) (local $kp i32) (local $mm i32) (local $ldcb i32)
    (local $pbx i32)
    (local.set $ldcb (i32.shl (local.get $ldc) (i32.const 2)))
    (loop $jcl
      (local.set $nn (select (local.get $nc) (i32.sub (local.get $N) (local.get $jc))
        (i32.lt_u (local.get $nc) (i32.sub (local.get $N) (local.get $jc)))))
      (local.set $pc (i32.const 0))
      (loop $pcl
        (local.set $kk (select (local.get $kc) (i32.sub (local.get $K) (local.get $pc))
          (i32.lt_u (local.get $kc) (i32.sub (local.get $K) (local.get $pc)))))
        (local.set $kp (i32.and (i32.add (local.get $kk) (i32.const 3)) (i32.const -4)))
        (if (local.get $pre)
          (then
            (local.set $pbx (local.get $pre))
            (local.set $pre (i32.add (local.get $pre) (i32.shl
              (i32.mul (i32.and (i32.add (local.get $nn) (i32.const 7)) (i32.const -8))
                (local.get $kp))
              (i32.const 2)))))
          (else
            (call $pack (local.get $b) (local.get $bcs) (local.get $brs) (local.get $jc)
              (local.get $nn) (local.get $pc) (local.get $kk) (i32.const 8) (local.get $pb))
            (local.set $pbx (local.get $pb))))
        (local.set $ic (i32.const 0))
        (loop $icl
          (local.set $mm (select (local.get $mc) (i32.sub (local.get $M) (local.get $ic))
            (i32.lt_u (local.get $mc) (i32.sub (local.get $M) (local.get $ic)))))
          (call $pack (local.get $a) (local.get $ars) (local.get $acs) (local.get $ic)
            (local.get $mm) (local.get $pc) (local.get $kk) (i32.const 6) (local.get $pa))
          (call $widen (local.get $pa) (i32.mul (i32.mul (i32.div_u
            (i32.add (local.get $mm) (i32.const 5)) (i32.const 6)) (i32.const 6)) (local.get $kp)))
          (local.set $jr (i32.const 0))
          (loop $jrl
            (local.set $ir (i32.const 0))
            (loop $irl
              (call $tile
                (i32.add (local.get $pa) (i32.shl (i32.mul (local.get $ir) (local.get $kp))
                  (i32.const 4)))
                (i32.add (local.get $pbx) (i32.shl (i32.mul (local.get $jr) (local.get $kp))
                  (i32.const 2)))
                (i32.shr_u (local.get $kp) (i32.const 2))
                (i32.add (local.get $c) (i32.shl
                  (i32.add
                    (i32.mul (i32.add (local.get $ic) (local.get $ir)) (local.get $ldc))
                    (i32.add (local.get $jc) (local.get $jr)))
                  (i32.const 2)))
                (local.get $ldcb)
                (local.get $pc)
                (select (i32.const 6) (i32.sub (local.get $mm) (local.get $ir))
                  (i32.lt_u (i32.const 6) (i32.sub (local.get $mm) (local.get $ir))))
                (select (i32.const 8) (i32.sub (local.get $nn) (local.get $jr))
                  (i32.lt_u (i32.const 8) (i32.sub (local.get $nn) (local.get $jr))))
                (local.get $scr))
              (br_if $irl (i32.lt_u
                (local.tee $ir (i32.add (local.get $ir) (i32.const 6))) (local.get $mm))))
            (br_if $jrl (i32.lt_u
              (local.tee $jr (i32.add (local.get $jr) (i32.const 8))) (local.get $nn))))
          (br_if $icl (i32.lt_u
            (local.tee $ic (i32.add (local.get $ic) (local.get $mc))) (local.get $M))))
        (br_if $pcl (i32.lt_u
          (local.tee $pc (i32.add (local.get $pc) (local.get $kc))) (local.get $K))))
      (br_if $jcl (i32.lt_u
        (local.tee $jc (i32.add (local.get $jc) (local.get $nc))) (local.get $N)))))

  ;; Packs all of B [K, N] into dst as $gemm would, block after block (nc columns, then kc-deep
  ;; slices; each block ⌈nn/8⌉ panels of 8 columns × kp), for $gemm's pre: a block of nc full
  ;; columns over all of K takes nc·Kp floats, Kp the sum of the slices' kp.
  (func $prepack (param $b i32) (param $brs i32) (param $bcs i32) (param $N i32) (param $K i32)
    (param $nc i32) (param $kc i32) (param $dst i32)
    (local $jc i32) (local $pc i32) (local $nn i32) (local $kk i32) (local $kp i32)
    (loop $jcl
      (local.set $nn (select (local.get $nc) (i32.sub (local.get $N) (local.get $jc))
        (i32.lt_u (local.get $nc) (i32.sub (local.get $N) (local.get $jc)))))
      (local.set $pc (i32.const 0))
      (loop $pcl
        (local.set $kk (select (local.get $kc) (i32.sub (local.get $K) (local.get $pc))
          (i32.lt_u (local.get $kc) (i32.sub (local.get $K) (local.get $pc)))))
        (local.set $kp (i32.and (i32.add (local.get $kk) (i32.const 3)) (i32.const -4)))
        (call $pack (local.get $b) (local.get $bcs) (local.get $brs) (local.get $jc)
          (local.get $nn) (local.get $pc) (local.get $kk) (i32.const 8) (local.get $dst))
        (local.set $dst (i32.add (local.get $dst) (i32.shl
          (i32.mul (i32.and (i32.add (local.get $nn) (i32.const 7)) (i32.const -8))
            (local.get $kp))
          (i32.const 2))))
        (br_if $pcl (i32.lt_u
          (local.tee $pc (i32.add (local.get $pc) (local.get $kc))) (local.get $K))))
      (br_if $jcl (i32.lt_u
        (local.tee $jc (i32.add (local.get $jc) (local.get $nc))) (local.get $N)))))

  ;; Runs one task as thread t: the descriptor at d starts with its kind (0: matmul,
  ;; 1: gelu, 2: gelu gradient, 3: cross-entropy row statistics, 4: cross-entropy gradient,
  ;; 5: AdamW update, 6: dropout, 7/8: attention forward/backward, 9: SiLU, 10: SiLU gradient,
  ;; 11: dropout keep mask, 12: attention softmax rows, 13: prepack B, 14: bias rows,
  ;; 15: column sums, 16/17/18: LayerNorm forward, backward dx, backward dw and db,
  ;; 19/20: residual forward and backward),
  ;; then its words (see each kernel). ops/_wasm_matmul.ts writes the descriptors.
  (func (export "task") (param $d i32) (param $t i32)
    (local $kind i32)
    (local.set $kind (i32.load (local.get $d)))
    (local.set $d (i32.add (local.get $d) (i32.const 8)))
    (if (i32.eqz (local.get $kind)) (then (call $gemm_task (local.get $d) (local.get $t)) (return)))
    (if (i32.eq (local.get $kind) (i32.const 1))
      (then (call $gelu (i32.load offset=0 (local.get $d)) (i32.load offset=8 (local.get $d))
        (i32.load offset=12 (local.get $d)) (local.get $t)) (return)))
    (if (i32.eq (local.get $kind) (i32.const 2))
      (then (call $gelu_grad (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d)) (local.get $t))
        (return)))
    (if (i32.eq (local.get $kind) (i32.const 3))
      (then (call $ce_rows (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d)) (local.get $t))
        (return)))
    (if (i32.eq (local.get $kind) (i32.const 4))
      (then (call $ce_grad (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))
        (f64.load offset=32 (local.get $d)) (f64.load offset=40 (local.get $d))
        (f64.load offset=48 (local.get $d)) (local.get $t)) (return)))
    (if (i32.eq (local.get $kind) (i32.const 5))
      (then (call $adamw (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (f64.load offset=32 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 6))
      (then (call $dropout (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (f64.load offset=32 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 7))
      (then (call $att_fwd (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (local.get $t)) (return)))
    (if (i32.eq (local.get $kind) (i32.const 8))
      (then (call $att_bwd (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (local.get $t)) (return)))
    (if (i32.eq (local.get $kind) (i32.const 9))
      (then (call $silu (i32.load offset=0 (local.get $d)) (i32.const 0)
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d)) (local.get $t))
        (return)))
    (if (i32.eq (local.get $kind) (i32.const 10))
      (then (call $silu (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d)) (local.get $t))
        (return)))
    (if (i32.eq (local.get $kind) (i32.const 13))
      (then (call $prepack (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 12))
      (then (call $softmax_rows (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))
        (f64.load offset=32 (local.get $d)) (i32.trunc_f64_u (f64.load offset=40 (local.get $d)))
        (i32.trunc_f64_u (f64.load offset=48 (local.get $d)))
        (i32.trunc_f64_u (f64.load offset=56 (local.get $d))) (local.get $t)) (return)))
    (if (i32.eq (local.get $kind) (i32.const 14))
      (then (call $add_rows (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 15))
      (then (call $sum_rows (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 16))
      (then (call $ln_fwd (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))
        (f64.load offset=32 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 17))
      (then (call $ln_bwd (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))
        (i32.load offset=32 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 18))
      (then (call $ln_bwd_cols (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))
        (i32.load offset=32 (local.get $d)) (i32.load offset=36 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 19))
      (then (call $residual_fwd (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))
        (i32.load offset=32 (local.get $d)) (i32.load offset=36 (local.get $d))
        (i32.load offset=40 (local.get $d)) (i32.load offset=44 (local.get $d))
        (f64.load offset=88 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 20))
      (then (call $residual_bwd (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (i32.load offset=24 (local.get $d)) (i32.load offset=28 (local.get $d))
        (i32.load offset=32 (local.get $d)) (i32.load offset=36 (local.get $d))
        (i32.load offset=40 (local.get $d)) (i32.load offset=44 (local.get $d))
        (i32.load offset=48 (local.get $d)) (i32.load offset=52 (local.get $d))
        (i32.load offset=56 (local.get $d)) (f64.load offset=88 (local.get $d))) (return)))
    (if (i32.eq (local.get $kind) (i32.const 11))
      (then (call $keep_mask (i32.load offset=0 (local.get $d)) (i32.load offset=4 (local.get $d))
        (i32.load offset=8 (local.get $d)) (i32.load offset=12 (local.get $d))
        (i32.load offset=16 (local.get $d))) (return)))
    (unreachable))

  ;; One matmul task for thread t: `count` products C = A·B with the operands of the
  ;; 23-word descriptor at d, each one sa, sb, sc bytes past the last, in thread t's
  ;; pack buffers and scratch (its workspace is w + t·wstride). Words:
  ;; a ars acs b brs bcs c M N K ldc count sa sb sc mc nc kc w wstride pb_off scr_off pre
  ;; (pre: B prepacked there, or 0; with count 1 only).
  (func $gemm_task (param $d i32) (param $t i32)
    (local $w i32) (local $n i32) (local $a i32) (local $b i32) (local $c i32)
    (local.set $w (i32.add (i32.load offset=72 (local.get $d))
      (i32.mul (local.get $t) (i32.load offset=76 (local.get $d)))))
    (local.set $a (i32.load offset=0 (local.get $d)))
    (local.set $b (i32.load offset=12 (local.get $d)))
    (local.set $c (i32.load offset=24 (local.get $d)))
    (local.set $n (i32.load offset=44 (local.get $d)))
    (loop $q
      (call $gemm
        (local.get $a) (i32.load offset=4 (local.get $d)) (i32.load offset=8 (local.get $d))
        (local.get $b) (i32.load offset=16 (local.get $d)) (i32.load offset=20 (local.get $d))
        (local.get $c) (i32.load offset=28 (local.get $d)) (i32.load offset=32 (local.get $d))
        (i32.load offset=36 (local.get $d))
        (local.get $w) (i32.add (local.get $w) (i32.load offset=80 (local.get $d)))
        (i32.load offset=60 (local.get $d)) (i32.load offset=64 (local.get $d))
        (i32.load offset=68 (local.get $d)) (i32.load offset=40 (local.get $d))
        (i32.add (local.get $w) (i32.load offset=84 (local.get $d)))
        (i32.load offset=88 (local.get $d)))
      (local.set $a (i32.add (local.get $a) (i32.load offset=48 (local.get $d))))
      (local.set $b (i32.add (local.get $b) (i32.load offset=52 (local.get $d))))
      (local.set $c (i32.add (local.get $c) (i32.load offset=56 (local.get $d))))
      (br_if $q (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))

  ;; ---- Elementwise and row kernels (f32 in memory, f64 arithmetic) -------------------
  ;; Each mirrors the TypeScript CPU function of its op operation for operation, with exp
  ;; as expF64 in ops/_exp.ts (its table 2^(j/64), 64 f64, lies at byte 32256, written
  ;; there by ops/_wasm_matmul.ts), so results are the same bits.
  ;;
  ;; exp and erf are long chains of dependent operations: one element at a time, the CPU
  ;; waits on each step. So they run in stages over blocks of up to 128 values in f64x2
  ;; lanes: each stage is a loop whose iterations are independent (the CPU overlaps them)
  ;; and the intermediate values wait in the thread's scratch: three f64 arrays of 128 at
  ;; 32768 + tid·3072 (ops/_wasm_matmul.ts keeps that range free below its operands).

  ;; f64x2 constants (the hot loops copy them into locals first).
  (global $exp_min v128 (v128.const f64x2 -746 -746))
  (global $exp_max v128 (v128.const f64x2 710 710))
  (global $exp_inv_l v128 (v128.const f64x2 92.33248261689366 92.33248261689366))
  (global $exp_shift v128 (v128.const f64x2 6755399441055744 6755399441055744))
  (global $exp_l_hi v128 (v128.const f64x2 0.01083042469326756 0.01083042469326756))
  (global $exp_l_lo v128 (v128.const f64x2 2.9815858269852933e-12 2.9815858269852933e-12))
  (global $exp_c5 v128 (v128.const f64x2 0.008333333333333333 0.008333333333333333))
  (global $exp_c4 v128 (v128.const f64x2 0.041666666666666664 0.041666666666666664))
  (global $exp_c3 v128 (v128.const f64x2 0.16666666666666666 0.16666666666666666))
  (global $exp_bits v128 (v128.const i64x2 0x4338000000000000 0x4338000000000000))
  (global $exp_bias v128 (v128.const i64x2 1023 1023))
  (global $half v128 (v128.const f64x2 0.5 0.5))
  (global $one v128 (v128.const f64x2 1 1))
  (global $two v128 (v128.const f64x2 2 2))
  (global $four v128 (v128.const f64x2 4 4))
  (global $zero v128 (v128.const f64x2 0 0))
  (global $sqrt1_2 v128 (v128.const f64x2 0.7071067811865476 0.7071067811865476))
  (global $inv_sqrt_2pi v128 (v128.const f64x2 0.3989422804014327 0.3989422804014327))
  (global $neg_half v128 (v128.const f64x2 -0.5 -0.5))
  ;; erfApprox: |x| < 0.5, x·(s0 + t·(s1 + … t·s6)), t = x²
  (global $erf_s0 v128 (v128.const f64x2 1.128379167095512573896 1.128379167095512573896))
  (global $erf_s1 v128 (v128.const f64x2 -0.376126389031837538 -0.376126389031837538))
  (global $erf_s2 v128 (v128.const f64x2 0.112837916709551257 0.112837916709551257))
  (global $erf_s3 v128 (v128.const f64x2 -0.0268661706451312557 -0.0268661706451312557))
  (global $erf_s4 v128 (v128.const f64x2 0.00522397762544218794 0.00522397762544218794))
  (global $erf_s5 v128 (v128.const f64x2 -0.000854832702345085 -0.000854832702345085))
  (global $erf_s6 v128 (v128.const f64x2 0.000120553329817897 0.000120553329817897))
  ;; erfApprox: 0.5 ≤ |x| < 4, 1 − t·exp(−a² − m0 + t·(m1 + t·(m2 + … t·m9))), t = 1/(1 + a/2)
  (global $erf_m0 v128 (v128.const f64x2 1.26551223 1.26551223))
  (global $erf_m1 v128 (v128.const f64x2 1.00002368 1.00002368))
  (global $erf_m2 v128 (v128.const f64x2 0.37409196 0.37409196))
  (global $erf_m3 v128 (v128.const f64x2 0.09678418 0.09678418))
  (global $erf_m4 v128 (v128.const f64x2 -0.18628806 -0.18628806))
  (global $erf_m5 v128 (v128.const f64x2 0.27886807 0.27886807))
  (global $erf_m6 v128 (v128.const f64x2 -1.13520398 -1.13520398))
  (global $erf_m7 v128 (v128.const f64x2 1.48851587 1.48851587))
  (global $erf_m8 v128 (v128.const f64x2 -0.82215223 -0.82215223))
  (global $erf_m9 v128 (v128.const f64x2 0.17087277 0.17087277))

  ;; The thread's scratch (three f64 arrays of 128: at s, s + 1024, s + 2048).
  (func $scratch (param $tid i32) (result i32)
    (i32.add (i32.const 32768) (i32.mul (local.get $tid) (i32.const 3072))))

  ;; p[i] = expF64(p[i]) for the n f64 at p, two at a time (an odd n also computes p[n]).
  ;; pmin/pmax are single instructions and keep NaN as Math.min/max do here; k comes from
  ;; the bits of t = k + 1.5·2^52 (their low 52 bits are k + 2^51); 2^e from bits.
  (func $exp_block (param $p i32) (param $n i32)
    (local $x v128) (local $t v128) (local $k v128) (local $r v128) (local $q v128)
    (local $ki v128) (local $e v128) (local $eh v128) (local $tab v128) (local $end i32)
    (local $lo v128) (local $hi v128) (local $il v128) (local $sh v128) (local $lh v128)
    (local $ll v128) (local $c5 v128) (local $c4 v128) (local $c3 v128) (local $h v128)
    (local $o v128) (local $bits v128) (local $bias v128)
    (local.set $lo (global.get $exp_min)) (local.set $hi (global.get $exp_max))
    (local.set $il (global.get $exp_inv_l)) (local.set $sh (global.get $exp_shift))
    (local.set $lh (global.get $exp_l_hi)) (local.set $ll (global.get $exp_l_lo))
    (local.set $c5 (global.get $exp_c5)) (local.set $c4 (global.get $exp_c4))
    (local.set $c3 (global.get $exp_c3)) (local.set $h (global.get $half))
    (local.set $o (global.get $one)) (local.set $bits (global.get $exp_bits))
    (local.set $bias (global.get $exp_bias))
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 3))))
    (block $done (loop $pair
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $x (f64x2.pmin (f64x2.pmax (v128.load (local.get $p)) (local.get $lo))
        (local.get $hi)))
      (local.set $t (f64x2.add (f64x2.mul (local.get $x) (local.get $il)) (local.get $sh)))
      (local.set $k (f64x2.sub (local.get $t) (local.get $sh)))
      (local.set $r (f64x2.sub (f64x2.sub (local.get $x) (f64x2.mul (local.get $k) (local.get $lh)))
        (f64x2.mul (local.get $k) (local.get $ll))))
      (local.set $q (f64x2.add (local.get $c4) (f64x2.mul (local.get $r) (local.get $c5))))
      (local.set $q (f64x2.add (local.get $c3) (f64x2.mul (local.get $r) (local.get $q))))
      (local.set $q (f64x2.add (local.get $h) (f64x2.mul (local.get $r) (local.get $q))))
      (local.set $q (f64x2.add (local.get $o) (f64x2.mul (local.get $r) (local.get $q))))
      (local.set $q (f64x2.add (local.get $o) (f64x2.mul (local.get $r) (local.get $q))))
      ;; k as i64, e = floor(k / 64) split in halves, T[k mod 64]
      (local.set $ki (i64x2.sub (local.get $t) (local.get $bits)))
      (local.set $e (i64x2.shr_s (local.get $ki) (i32.const 6)))
      (local.set $eh (i64x2.shr_s (local.get $e) (i32.const 1)))
      (local.set $tab (f64x2.replace_lane 1
        (f64x2.splat (f64.load offset=32256 (i32.shl
          (i32.and (i32.wrap_i64 (i64x2.extract_lane 0 (local.get $ki))) (i32.const 63))
          (i32.const 3))))
        (f64.load offset=32256 (i32.shl
          (i32.and (i32.wrap_i64 (i64x2.extract_lane 1 (local.get $ki))) (i32.const 63))
          (i32.const 3)))))
      (v128.store (local.get $p) (f64x2.mul
        (f64x2.mul (f64x2.mul (local.get $tab) (local.get $q))
          (i64x2.shl (i64x2.add (local.get $eh) (local.get $bias)) (i32.const 52)))
        (i64x2.shl (i64x2.add (i64x2.sub (local.get $e) (local.get $eh)) (local.get $bias))
          (i32.const 52))))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $pair))))

  ;; p[i] = erfApprox(p[i]) (ops/_wgsl.ts) for the n f64 at p (an odd n also computes p[n]),
  ;; with q and r (n + 1 f64 each) as scratch: both branches computed, each lane's kept.
  (func $erf_block (param $p i32) (param $n i32) (param $q i32) (param $r i32)
    (local $i i32) (local $end i32) (local $x v128) (local $a v128) (local $t v128)
    (local $small v128) (local $mid v128) (local $res v128)
    ;; the constants in locals (loaded once, not per use: 11% faster)
    (local $one v128) (local $half v128) (local $erf_m0 v128) (local $erf_m1 v128)
    (local $erf_m2 v128) (local $erf_m3 v128) (local $erf_m4 v128) (local $erf_m5 v128)
    (local $erf_m6 v128) (local $erf_m7 v128) (local $erf_m8 v128) (local $erf_m9 v128)
    (local $erf_s0 v128) (local $erf_s1 v128) (local $erf_s2 v128) (local $erf_s3 v128)
    (local $erf_s4 v128) (local $erf_s5 v128) (local $erf_s6 v128) (local $four v128)
    (local $zero v128)
    (local.set $one (global.get $one)) (local.set $half (global.get $half))
    (local.set $erf_m0 (global.get $erf_m0)) (local.set $erf_m1 (global.get $erf_m1))
    (local.set $erf_m2 (global.get $erf_m2)) (local.set $erf_m3 (global.get $erf_m3))
    (local.set $erf_m4 (global.get $erf_m4)) (local.set $erf_m5 (global.get $erf_m5))
    (local.set $erf_m6 (global.get $erf_m6)) (local.set $erf_m7 (global.get $erf_m7))
    (local.set $erf_m8 (global.get $erf_m8)) (local.set $erf_m9 (global.get $erf_m9))
    (local.set $erf_s0 (global.get $erf_s0)) (local.set $erf_s1 (global.get $erf_s1))
    (local.set $erf_s2 (global.get $erf_s2)) (local.set $erf_s3 (global.get $erf_s3))
    (local.set $erf_s4 (global.get $erf_s4)) (local.set $erf_s5 (global.get $erf_s5))
    (local.set $erf_s6 (global.get $erf_s6)) (local.set $four (global.get $four))
    (local.set $zero (global.get $zero))
    (local.set $end (i32.shl (local.get $n) (i32.const 3)))
    ;; stage 1: t = 1 / (1 + 0.5·a) to q, exp's argument to r
    (local.set $i (i32.const 0))
    (block $d1 (loop $l1
      (br_if $d1 (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $a (f64x2.abs (v128.load (i32.add (local.get $p) (local.get $i)))))
      (local.set $t (f64x2.div (local.get $one)
        (f64x2.add (local.get $one) (f64x2.mul (local.get $half) (local.get $a)))))
      (v128.store (i32.add (local.get $q) (local.get $i)) (local.get $t))
      (v128.store (i32.add (local.get $r) (local.get $i))
        (f64x2.add
          (f64x2.sub (f64x2.mul (f64x2.neg (local.get $a)) (local.get $a)) (local.get $erf_m0))
          (f64x2.mul (local.get $t)
            (f64x2.add (local.get $erf_m1) (f64x2.mul (local.get $t)
              (f64x2.add (local.get $erf_m2) (f64x2.mul (local.get $t)
                (f64x2.add (local.get $erf_m3) (f64x2.mul (local.get $t)
                  (f64x2.add (local.get $erf_m4) (f64x2.mul (local.get $t)
                    (f64x2.add (local.get $erf_m5) (f64x2.mul (local.get $t)
                      (f64x2.add (local.get $erf_m6) (f64x2.mul (local.get $t)
                        (f64x2.add (local.get $erf_m7) (f64x2.mul (local.get $t)
                          (f64x2.add (local.get $erf_m8) (f64x2.mul (local.get $t)
                            (local.get $erf_m9))))))))))))))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l1)))
    ;; stage 2: the exponentials
    (call $exp_block (local.get $r) (local.get $n))
    ;; stage 3: the small-|x| polynomial, the branch of each lane, the sign
    (local.set $i (i32.const 0))
    (block $d3 (loop $l3
      (br_if $d3 (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $x (v128.load (i32.add (local.get $p) (local.get $i))))
      (local.set $a (f64x2.abs (local.get $x)))
      (local.set $t (f64x2.mul (local.get $x) (local.get $x)))
      (local.set $small (f64x2.mul (local.get $a)
        (f64x2.add (local.get $erf_s0) (f64x2.mul (local.get $t)
          (f64x2.add (local.get $erf_s1) (f64x2.mul (local.get $t)
            (f64x2.add (local.get $erf_s2) (f64x2.mul (local.get $t)
              (f64x2.add (local.get $erf_s3) (f64x2.mul (local.get $t)
                (f64x2.add (local.get $erf_s4) (f64x2.mul (local.get $t)
                  (f64x2.add (local.get $erf_s5) (f64x2.mul (local.get $t)
                    (local.get $erf_s6)))))))))))))))
      (local.set $mid (f64x2.sub (local.get $one)
        (f64x2.mul (v128.load (i32.add (local.get $q) (local.get $i)))
          (v128.load (i32.add (local.get $r) (local.get $i))))))
      (local.set $res (v128.bitselect (local.get $small)
        (v128.bitselect (local.get $mid) (local.get $one)
          (f64x2.lt (local.get $a) (local.get $four)))
        (f64x2.lt (local.get $a) (local.get $half))))
      (v128.store (i32.add (local.get $p) (local.get $i))
        (v128.bitselect (f64x2.neg (local.get $res)) (local.get $res)
          (f64x2.lt (local.get $x) (local.get $zero))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l3))))

  ;; Two f32 at p as f64x2.
  (func $load2 (param $p i32) (result v128)
    (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p))))

  ;; Stores lane 0, and lane 1 unless `one`, of v's f32 rounding at p.
  (func $store2 (param $p i32) (param $v v128) (param $one i32)
    (local.set $v (f32x4.demote_f64x2_zero (local.get $v)))
    (if (local.get $one)
      (then (v128.store32_lane 0 (local.get $p) (local.get $v)))
      (else (v128.store64_lane 0 (local.get $p) (local.get $v)))))

  ;; s[i] = f64(x[i])·√½ for a block of m f32 at x (the pair past an odd m reads one f32 more).
  (func $scaled_block (param $x i32) (param $s i32) (param $m i32)
    (local $i i32)
    (local $sqrt1_2 v128)
    (local.set $sqrt1_2 (global.get $sqrt1_2))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $m)))
      (v128.store (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 3)))
        (f64x2.mul (call $load2 (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))
          (local.get $sqrt1_2)))
      (local.set $i (i32.add (local.get $i) (i32.const 2)))
      (br $l))))

  ;; GELU (ops/elementwise.ts): out[i] = 0.5·x·(1 + erf(x·√½)) for n f32 at x, out; thread tid.
  (func $gelu (param $x i32) (param $out i32) (param $n i32) (param $tid i32)
    (local $s i32) (local $m i32) (local $i i32) (local $o i32)
    (local $half v128) (local $one v128)
    (local.set $half (global.get $half)) (local.set $one (global.get $one))
    (local.set $s (call $scratch (local.get $tid)))
    (block $done (loop $block
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $m (select (i32.const 128) (local.get $n) (i32.gt_u (local.get $n) (i32.const 128))))
      (call $scaled_block (local.get $x) (local.get $s) (local.get $m))
      (call $erf_block (local.get $s) (local.get $m) (i32.add (local.get $s) (i32.const 1024))
        (i32.add (local.get $s) (i32.const 2048)))
      (local.set $i (i32.const 0))
      (block $d (loop $l
        (br_if $d (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (call $store2 (i32.add (local.get $out) (local.get $o))
          (f64x2.mul (f64x2.mul (local.get $half) (call $load2 (i32.add (local.get $x) (local.get $o))))
            (f64x2.add (local.get $one)
              (v128.load (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 3))))))
          (i32.eq (i32.add (local.get $i) (i32.const 1)) (local.get $m)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $l)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $m) (i32.const 2))))
      (local.set $out (i32.add (local.get $out) (i32.shl (local.get $m) (i32.const 2))))
      (local.set $n (i32.sub (local.get $n) (local.get $m)))
      (br $block))))

  ;; SiLU (ops/elementwise.ts) of n f32 at x to out, thread tid, with σ = 1 / (1 + expF64(−x)):
  ;; dy = 0: out[i] = x·σ; else its gradient out[i] = (dy·σ)·(1 + x·(1 − σ)) (dy: n f32).
  (func $silu (param $x i32) (param $dy i32) (param $out i32) (param $n i32) (param $tid i32)
    (local $s i32) (local $m i32) (local $i i32) (local $o i32) (local $v v128) (local $sg v128)
    (local $one v128)
    (local.set $one (global.get $one))
    (local.set $s (call $scratch (local.get $tid)))
    (block $done (loop $block
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $m (select (i32.const 128) (local.get $n) (i32.gt_u (local.get $n) (i32.const 128))))
      ;; −x, then its exponentials
      (local.set $i (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $i) (local.get $m)))
        (v128.store (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 3)))
          (f64x2.neg (call $load2 (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $l1)))
      (call $exp_block (local.get $s) (local.get $m))
      (local.set $i (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (local.set $v (call $load2 (i32.add (local.get $x) (local.get $o))))
        (local.set $sg (f64x2.div (local.get $one) (f64x2.add (local.get $one)
          (v128.load (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 3)))))))
        (call $store2 (i32.add (local.get $out) (local.get $o))
          (if (result v128) (local.get $dy)
            (then (f64x2.mul
              (f64x2.mul (call $load2 (i32.add (local.get $dy) (local.get $o))) (local.get $sg))
              (f64x2.add (local.get $one)
                (f64x2.mul (local.get $v) (f64x2.sub (local.get $one) (local.get $sg))))))
            (else (f64x2.mul (local.get $v) (local.get $sg))))
          (i32.eq (i32.add (local.get $i) (i32.const 1)) (local.get $m)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $l2)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $m) (i32.const 2))))
      (if (local.get $dy)
        (then (local.set $dy (i32.add (local.get $dy) (i32.shl (local.get $m) (i32.const 2))))))
      (local.set $out (i32.add (local.get $out) (i32.shl (local.get $m) (i32.const 2))))
      (local.set $n (i32.sub (local.get $n) (local.get $m)))
      (br $block))))

  ;; GELU's gradient: out[i] = dy·(0.5·(1 + erf(x·√½)) + x·(1/√(2π))·exp(−0.5·x·x)).
  (func $gelu_grad (param $x i32) (param $dy i32) (param $out i32) (param $n i32) (param $tid i32)
    (local $s i32) (local $e i32) (local $m i32) (local $i i32) (local $o i32) (local $v v128)
    (local $neg_half v128) (local $half v128) (local $one v128) (local $inv_sqrt_2pi v128)
    (local.set $neg_half (global.get $neg_half)) (local.set $half (global.get $half))
    (local.set $one (global.get $one)) (local.set $inv_sqrt_2pi (global.get $inv_sqrt_2pi))
    (local.set $s (call $scratch (local.get $tid)))
    (local.set $e (i32.add (local.get $s) (i32.const 1024)))
    (block $done (loop $block
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $m (select (i32.const 128) (local.get $n) (i32.gt_u (local.get $n) (i32.const 128))))
      (call $scaled_block (local.get $x) (local.get $s) (local.get $m))
      (call $erf_block (local.get $s) (local.get $m) (local.get $e)
        (i32.add (local.get $s) (i32.const 2048)))
      ;; exp(−0.5·x·x) into the second array (free again)
      (local.set $i (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $v (call $load2 (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))))
        (v128.store (i32.add (local.get $e) (i32.shl (local.get $i) (i32.const 3)))
          (f64x2.mul (f64x2.mul (local.get $neg_half) (local.get $v)) (local.get $v)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $l1)))
      (call $exp_block (local.get $e) (local.get $m))
      (local.set $i (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (local.set $v (call $load2 (i32.add (local.get $x) (local.get $o))))
        (call $store2 (i32.add (local.get $out) (local.get $o))
          (f64x2.mul (call $load2 (i32.add (local.get $dy) (local.get $o)))
            (f64x2.add
              (f64x2.mul (local.get $half) (f64x2.add (local.get $one)
                (v128.load (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 3))))))
              (f64x2.mul (f64x2.mul (local.get $v) (local.get $inv_sqrt_2pi))
                (v128.load (i32.add (local.get $e) (i32.shl (local.get $i) (i32.const 3)))))))
          (i32.eq (i32.add (local.get $i) (i32.const 1)) (local.get $m)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $l2)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $m) (i32.const 2))))
      (local.set $dy (i32.add (local.get $dy) (i32.shl (local.get $m) (i32.const 2))))
      (local.set $out (i32.add (local.get $out) (i32.shl (local.get $m) (i32.const 2))))
      (local.set $n (i32.sub (local.get $n) (local.get $m)))
      (br $block))))

  ;; s[i] = f64(x[i]) − c for a block of m f32 at x (the pair past an odd m reads one f32 more).
  (func $shifted_block (param $x i32) (param $s i32) (param $m i32) (param $c v128)
    (local $i i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $m)))
      (v128.store (i32.add (local.get $s) (i32.shl (local.get $i) (i32.const 3)))
        (f64x2.sub (call $load2 (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))
          (local.get $c)))
      (local.set $i (i32.add (local.get $i) (i32.const 2)))
      (br $l))))

  ;; Cross-entropy row statistics (rowStats in ops/cross_entropy.ts) of rows r0 .. r1-1 of
  ;; x [N, V] (f32): out[r] (4 f64 each) = max m, Σ x, Σ exp(x − m) (added in index order),
  ;; and, where t ≠ 0 and 0 ≤ t[r] < V, the count of j with x[j] > x[t[r]] or x[j] = x[t[r]]
  ;; and j < t[r].
  (func $ce_rows (param $x i32) (param $t i32) (param $out i32) (param $r0 i32) (param $r1 i32)
    (param $V i32) (param $tid i32)
    (local $p i32) (local $end i32) (local $j i32) (local $m f64) (local $sum f64) (local $s f64)
    (local $v f32) (local $xt f32) (local $tn i32) (local $above i32) (local $o i32)
    (local $sc i32) (local $c i32) (local $q i32) (local $qe i32)
    (local.set $sc (call $scratch (local.get $tid)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r0) (local.get $r1)))
        (local.set $p (i32.add (local.get $x)
          (i32.shl (i32.mul (local.get $r0) (local.get $V)) (i32.const 2))))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $V) (i32.const 2))))
        (local.set $m (f64.const -inf))
        (local.set $sum (f64.const 0))
        (local.set $s (f64.const 0))
        (local.set $o (local.get $p))
        (block $b1 (loop $l1
          (br_if $b1 (i32.ge_u (local.get $o) (local.get $end)))
          (local.set $m (f64.max (local.get $m) (f64.promote_f32 (f32.load (local.get $o)))))
          (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (f32.load (local.get $o)))))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $l1)))
        ;; Σ exp(x − m) in blocks of 128 through the scratch
        (local.set $o (local.get $p))
        (block $b2 (loop $l2
          (br_if $b2 (i32.ge_u (local.get $o) (local.get $end)))
          (local.set $c (i32.shr_u (i32.sub (local.get $end) (local.get $o)) (i32.const 2)))
          (local.set $c (select (i32.const 128) (local.get $c) (i32.gt_u (local.get $c) (i32.const 128))))
          (call $shifted_block (local.get $o) (local.get $sc) (local.get $c)
            (f64x2.splat (local.get $m)))
          (call $exp_block (local.get $sc) (local.get $c))
          (local.set $q (local.get $sc))
          (local.set $qe (i32.add (local.get $sc) (i32.shl (local.get $c) (i32.const 3))))
          (block $b3 (loop $l3
            (br_if $b3 (i32.ge_u (local.get $q) (local.get $qe)))
            (local.set $s (f64.add (local.get $s) (f64.load (local.get $q))))
            (local.set $q (i32.add (local.get $q) (i32.const 8)))
            (br $l3)))
          (local.set $o (i32.add (local.get $o) (i32.shl (local.get $c) (i32.const 2))))
          (br $l2)))
        (local.set $above (i32.const -1))
        (if (local.get $t)
          (then
            (local.set $tn (i32.load (i32.add (local.get $t) (i32.shl (local.get $r0) (i32.const 2)))))
            (if (i32.lt_u (local.get $tn) (local.get $V))
              (then
                (local.set $xt (f32.load (i32.add (local.get $p) (i32.shl (local.get $tn) (i32.const 2)))))
                (local.set $above (i32.const 0))
                (local.set $j (i32.const 0))
                (local.set $o (local.get $p))
                (block $b4 (loop $l4
                  (br_if $b4 (i32.ge_u (local.get $o) (local.get $end)))
                  (local.set $v (f32.load (local.get $o)))
                  (if (i32.or (f32.gt (local.get $v) (local.get $xt))
                      (i32.and (f32.eq (local.get $v) (local.get $xt))
                        (i32.lt_s (local.get $j) (local.get $tn))))
                    (then (local.set $above (i32.add (local.get $above) (i32.const 1)))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (local.set $o (i32.add (local.get $o) (i32.const 4)))
                  (br $l4)))))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $r0) (i32.const 5))))
        (f64.store offset=0 (local.get $o) (local.get $m))
        (f64.store offset=8 (local.get $o) (local.get $sum))
        (f64.store offset=16 (local.get $o) (local.get $s))
        (f64.store offset=24 (local.get $o) (f64.convert_i32_s (local.get $above)))
        (local.set $r0 (i32.add (local.get $r0) (i32.const 1)))
        (br $row))))

  ;; Cross-entropy gradient (CROSS_ENTROPY_GRAD in ops/cross_entropy.ts) of rows r0 .. r1-1:
  ;; dx[r, j] = (exp(x[r, j] − lse[r]) − (j = t[r] ? a : 0) − b)·g where t[r] ≠ ignore and
  ;; 0 ≤ t[r] < V, else 0 (a = 1 − ε, b = ε/V). Columns in blocks of 128 through the scratch,
  ;; then in pairs: (j, j + 1) as f64x2 lanes.
  (func $ce_grad (param $x i32) (param $t i32) (param $dx i32) (param $r0 i32) (param $r1 i32)
    (param $V i32) (param $lse i32) (param $ignore i32) (param $a f64) (param $b f64) (param $g f64)
    (param $tid i32)
    (local $o i32) (local $q i32) (local $tn i32) (local $l v128) (local $jv v128) (local $tv v128)
    (local $av v128) (local $bv v128) (local $gv v128) (local $sc i32) (local $left i32)
    (local $c i32) (local $i i32)
    (local $two v128) (local $one v128)
    (local.set $two (global.get $two)) (local.set $one (global.get $one))
    (local.set $sc (call $scratch (local.get $tid)))
    (local.set $av (f64x2.splat (local.get $a)))
    (local.set $bv (f64x2.splat (local.get $b)))
    (local.set $gv (f64x2.splat (local.get $g)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $r0) (local.get $r1)))
        (local.set $o (i32.shl (i32.mul (local.get $r0) (local.get $V)) (i32.const 2)))
        (local.set $q (i32.add (local.get $dx) (local.get $o)))
        (local.set $o (i32.add (local.get $x) (local.get $o)))
        (local.set $tn (i32.load (i32.add (local.get $t) (i32.shl (local.get $r0) (i32.const 2)))))
        (if (i32.and (i32.ne (local.get $tn) (local.get $ignore))
            (i32.lt_u (local.get $tn) (local.get $V)))
          (then
            (local.set $l (f64x2.splat (f64.promote_f32 (f32.load
              (i32.add (local.get $lse) (i32.shl (local.get $r0) (i32.const 2)))))))
            (local.set $tv (f64x2.splat (f64.convert_i32_s (local.get $tn))))
            (local.set $jv (v128.const f64x2 0 1))
            (local.set $left (local.get $V))
            (block $b (loop $blk
              (br_if $b (i32.eqz (local.get $left)))
              (local.set $c (select (i32.const 128) (local.get $left)
                (i32.gt_u (local.get $left) (i32.const 128))))
              (call $shifted_block (local.get $o) (local.get $sc) (local.get $c) (local.get $l))
              (call $exp_block (local.get $sc) (local.get $c))
              (local.set $i (i32.const 0))
              (block $d (loop $l1
                (br_if $d (i32.ge_u (local.get $i) (local.get $c)))
                (call $store2 (i32.add (local.get $q) (i32.shl (local.get $i) (i32.const 2)))
                  (f64x2.mul
                    (f64x2.sub
                      (f64x2.sub (v128.load (i32.add (local.get $sc) (i32.shl (local.get $i) (i32.const 3))))
                        (v128.and (local.get $av) (f64x2.eq (local.get $jv) (local.get $tv))))
                      (local.get $bv))
                    (local.get $gv))
                  (i32.eq (i32.add (local.get $i) (i32.const 1)) (local.get $c)))
                (local.set $jv (f64x2.add (local.get $jv) (local.get $two)))
                (local.set $i (i32.add (local.get $i) (i32.const 2)))
                (br $l1)))
              ;; an odd block ends mid-pair: the next one starts at the pair's second column
              (if (i32.and (local.get $c) (i32.const 1))
                (then (local.set $jv (f64x2.sub (local.get $jv) (local.get $one)))))
              (local.set $o (i32.add (local.get $o) (i32.shl (local.get $c) (i32.const 2))))
              (local.set $q (i32.add (local.get $q) (i32.shl (local.get $c) (i32.const 2))))
              (local.set $left (i32.sub (local.get $left) (local.get $c)))
              (br $blk))))
          (else (memory.fill (local.get $q) (i32.const 0)
            (i32.shl (local.get $V) (i32.const 2)))))
        (local.set $r0 (i32.add (local.get $r0) (i32.const 1)))
        (br $row))))

  ;; ---- Attention (attentionCpu / attentionBackwardCpu in ops/attention.ts, no dropout) ----
  ;; Each mirrors its TypeScript reference operation for operation in f64 (dot products as
  ;; dotPairs, the row's exponentials by $exp_block as expF64), so results are the same bits;
  ;; the sums over d that the reference keeps per element (P·V, dK, dV, dQ) run two d at a
  ;; time in f64x2 lanes. A task runs the heads bh0 .. bh1-1 (bh = b·H + h);
  ;; the parameters are a block of words at pb (ops/_cpu_threads_kernels.ts writes it).
  ;; Rows: q row t of head (b, h) is at element (base + t·step)·D, with base = bh·T, step 1
  ;; ("BHTD") or base = b·T·H + h, step H ("BTHD"); k and v the same with S.

  ;; acc[0 .. D) += w·x[0 .. D) (acc f64, x f32), pairs then the odd one.
  (func $axpy (param $acc i32) (param $w f64) (param $x i32) (param $D i32)
    (local $d i32) (local $wv v128)
    (local.set $wv (f64x2.splat (local.get $w)))
    (block $done (loop $pair
      (br_if $done (i32.ge_u (i32.add (local.get $d) (i32.const 1)) (local.get $D)))
      (v128.store (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3)))
        (f64x2.add (v128.load (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3))))
          (f64x2.mul (local.get $wv) (call $load2
            (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2)))))))
      (local.set $d (i32.add (local.get $d) (i32.const 2)))
      (br $pair)))
    (if (i32.lt_u (local.get $d) (local.get $D))
      (then (f64.store (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3)))
        (f64.add (f64.load (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3))))
          (f64.mul (local.get $w) (f64.promote_f32
            (f32.load (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2)))))))))))

  ;; Σ_d x[d]·y[d] (f32 operands) as dotPairs in ops/attention.ts: the even and the odd d in
  ;; the two lanes of an f64x2 sum, the lanes added, then the last term when D is odd.
  (func $dot (param $x i32) (param $y i32) (param $D i32) (result f64)
    (local $acc v128) (local $d i32) (local $s f64)
    (block $done (loop $pair
      (br_if $done (i32.ge_u (i32.add (local.get $d) (i32.const 1)) (local.get $D)))
      (local.set $acc (f64x2.add (local.get $acc) (f64x2.mul
        (call $load2 (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2))))
        (call $load2 (i32.add (local.get $y) (i32.shl (local.get $d) (i32.const 2)))))))
      (local.set $d (i32.add (local.get $d) (i32.const 2)))
      (br $pair)))
    (local.set $s (f64.add (f64x2.extract_lane 0 (local.get $acc)) (f64x2.extract_lane 1 (local.get $acc))))
    (if (i32.lt_u (local.get $d) (local.get $D))
      (then (local.set $s (f64.add (local.get $s) (f64.mul
        (f64.promote_f32 (f32.load (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2)))))
        (f64.promote_f32 (f32.load (i32.add (local.get $y) (i32.shl (local.get $d) (i32.const 2))))))))))
    (local.get $s))

  ;; acc[d] += w·x[d] (as $axpy) and, in the same pass over d, Σ_d x[d]·y[d] (as $dot).
  (func $axpy_dot (param $acc i32) (param $w f64) (param $x i32) (param $y i32) (param $D i32)
    (result f64)
    (local $d i32) (local $wv v128) (local $xv v128) (local $sum v128) (local $s f64)
    (local.set $wv (f64x2.splat (local.get $w)))
    (block $done (loop $pair
      (br_if $done (i32.ge_u (i32.add (local.get $d) (i32.const 1)) (local.get $D)))
      (local.set $xv (call $load2 (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2)))))
      (v128.store (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3)))
        (f64x2.add (v128.load (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3))))
          (f64x2.mul (local.get $wv) (local.get $xv))))
      (local.set $sum (f64x2.add (local.get $sum) (f64x2.mul (local.get $xv)
        (call $load2 (i32.add (local.get $y) (i32.shl (local.get $d) (i32.const 2)))))))
      (local.set $d (i32.add (local.get $d) (i32.const 2)))
      (br $pair)))
    (local.set $s (f64.add (f64x2.extract_lane 0 (local.get $sum)) (f64x2.extract_lane 1 (local.get $sum))))
    (if (i32.lt_u (local.get $d) (local.get $D))
      (then
        (f64.store (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3)))
          (f64.add (f64.load (i32.add (local.get $acc) (i32.shl (local.get $d) (i32.const 3))))
            (f64.mul (local.get $w) (f64.promote_f32
              (f32.load (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2))))))))
        (local.set $s (f64.add (local.get $s) (f64.mul
          (f64.promote_f32 (f32.load (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2)))))
          (f64.promote_f32 (f32.load (i32.add (local.get $y) (i32.shl (local.get $d) (i32.const 2))))))))))
    (local.get $s))

  ;; a[d] += w·x[d] and b[d] += w·y[d] (as two $axpy) in one pass over d.
  (func $axpy2 (param $a i32) (param $x i32) (param $b i32) (param $y i32) (param $w f64) (param $D i32)
    (local $d i32) (local $wv v128) (local $o i32) (local $i i32)
    (local.set $wv (f64x2.splat (local.get $w)))
    (block $done (loop $pair
      (br_if $done (i32.ge_u (i32.add (local.get $d) (i32.const 1)) (local.get $D)))
      (local.set $o (i32.shl (local.get $d) (i32.const 3)))
      (local.set $i (i32.shl (local.get $d) (i32.const 2)))
      (v128.store (i32.add (local.get $a) (local.get $o))
        (f64x2.add (v128.load (i32.add (local.get $a) (local.get $o)))
          (f64x2.mul (local.get $wv) (call $load2 (i32.add (local.get $x) (local.get $i))))))
      (v128.store (i32.add (local.get $b) (local.get $o))
        (f64x2.add (v128.load (i32.add (local.get $b) (local.get $o)))
          (f64x2.mul (local.get $wv) (call $load2 (i32.add (local.get $y) (local.get $i))))))
      (local.set $d (i32.add (local.get $d) (i32.const 2)))
      (br $pair)))
    (if (i32.lt_u (local.get $d) (local.get $D))
      (then
        (local.set $o (i32.shl (local.get $d) (i32.const 3)))
        (local.set $i (i32.shl (local.get $d) (i32.const 2)))
        (f64.store (i32.add (local.get $a) (local.get $o)) (f64.add (f64.load (i32.add (local.get $a) (local.get $o)))
          (f64.mul (local.get $w) (f64.promote_f32 (f32.load (i32.add (local.get $x) (local.get $i)))))))
        (f64.store (i32.add (local.get $b) (local.get $o)) (f64.add (f64.load (i32.add (local.get $b) (local.get $o)))
          (f64.mul (local.get $w) (f64.promote_f32 (f32.load (i32.add (local.get $y) (local.get $i))))))))))

  ;; out[0 .. D) = f32(acc[0 .. D)).
  (func $store_row (param $out i32) (param $acc i32) (param $D i32)
    (block $done (loop $d
      (br_if $done (i32.eqz (local.get $D)))
      (f32.store (local.get $out) (f32.demote_f64 (f64.load (local.get $acc))))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (local.set $acc (i32.add (local.get $acc) (i32.const 8)))
      (local.set $D (i32.sub (local.get $D) (i32.const 1)))
      (br $d))))

  ;; RowContext.fill: z[s] = (q·k_s)·scale where key s is allowed (ok[s] = 1), for query row
  ;; t of the head whose k rows start at kb (step ks, elements); returns whether any is.
  ;; Words at pb: ... (see $att_fwd).
  (func $att_scores (param $q i32) (param $k i32) (param $kb i32) (param $ks i32) (param $mask i32)
    (param $b i32) (param $t i32) (param $T i32) (param $S i32) (param $D i32) (param $causal i32)
    (param $scale f64) (param $z i32) (param $ok i32) (result i32)
    (local $s i32) (local $lim i32) (local $any i32) (local $allowed i32)
    (local.set $lim (select (i32.sub (i32.add (local.get $t) (local.get $S)) (local.get $T))
      (i32.sub (local.get $S) (i32.const 1)) (local.get $causal)))
    (block $done (loop $key
      (br_if $done (i32.ge_s (local.get $s) (local.get $S)))
      (local.set $allowed (i32.le_s (local.get $s) (local.get $lim)))
      (if (i32.and (local.get $allowed) (i32.ne (local.get $mask) (i32.const 0)))
        (then (local.set $allowed (f32.ne (f32.load (i32.add (local.get $mask) (i32.shl
          (i32.add (i32.mul (local.get $b) (local.get $S)) (local.get $s)) (i32.const 2))))
          (f32.const 0)))))
      (i32.store (i32.add (local.get $ok) (i32.shl (local.get $s) (i32.const 2))) (local.get $allowed))
      (if (local.get $allowed)
        (then
          (local.set $any (i32.const 1))
          (f64.store (i32.add (local.get $z) (i32.shl (local.get $s) (i32.const 3)))
            (f64.mul (call $dot (local.get $q) (i32.add (local.get $k) (i32.shl
              (i32.mul (i32.add (local.get $kb) (i32.mul (local.get $s) (local.get $ks))) (local.get $D))
              (i32.const 2))) (local.get $D)) (local.get $scale)))))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (br $key)))
    (local.get $any))

  ;; Forward of heads bh0 .. bh1-1. Words at pb: q k v mask(0: none) out stats H T S D bhtd
  ;; causal scratch stride, then the scale (f64) at byte 56. stats[r] (2 f64): the row's max
  ;; and Σ exp (TypeScript adds log(Σ) for lse), or −∞ and −1 when no key is allowed.
  ;; Thread scratch (at scratch + tid·stride): z [S] f64, e [S + 1] f64, ok [S] i32, acc [D + 1].
  (func $att_fwd (param $pb i32) (param $bh0 i32) (param $bh1 i32) (param $tid i32)
    (local $q i32) (local $k i32) (local $v i32) (local $mask i32) (local $out i32) (local $st i32)
    (local $H i32) (local $T i32) (local $S i32) (local $D i32) (local $bhtd i32) (local $causal i32)
    (local $scale f64) (local $z i32) (local $e i32) (local $ok i32) (local $acc i32)
    (local $b i32) (local $h i32) (local $qb i32) (local $qs i32) (local $kb i32) (local $ks i32)
    (local $t i32) (local $s i32) (local $r i32) (local $any i32) (local $m f64) (local $sum f64)
    (local $w f64) (local $x f64)
    (local.set $q (i32.load offset=0 (local.get $pb)))
    (local.set $k (i32.load offset=4 (local.get $pb)))
    (local.set $v (i32.load offset=8 (local.get $pb)))
    (local.set $mask (i32.load offset=12 (local.get $pb)))
    (local.set $out (i32.load offset=16 (local.get $pb)))
    (local.set $st (i32.load offset=20 (local.get $pb)))
    (local.set $H (i32.load offset=24 (local.get $pb)))
    (local.set $T (i32.load offset=28 (local.get $pb)))
    (local.set $S (i32.load offset=32 (local.get $pb)))
    (local.set $D (i32.load offset=36 (local.get $pb)))
    (local.set $bhtd (i32.load offset=40 (local.get $pb)))
    (local.set $causal (i32.load offset=44 (local.get $pb)))
    (local.set $z (i32.add (i32.load offset=48 (local.get $pb))
      (i32.mul (local.get $tid) (i32.load offset=52 (local.get $pb)))))
    (local.set $scale (f64.load offset=56 (local.get $pb)))
    (local.set $e (i32.add (local.get $z) (call $align16 (i32.shl (local.get $S) (i32.const 3)))))
    (local.set $ok (i32.add (local.get $e) (call $align16
      (i32.shl (i32.add (local.get $S) (i32.const 1)) (i32.const 3)))))
    (local.set $acc (i32.add (local.get $ok) (call $align16 (i32.shl (local.get $S) (i32.const 2)))))
    (block $heads_done (loop $head
      (br_if $heads_done (i32.ge_u (local.get $bh0) (local.get $bh1)))
      (local.set $b (i32.div_u (local.get $bh0) (local.get $H)))
      (local.set $h (i32.rem_u (local.get $bh0) (local.get $H)))
      (if (local.get $bhtd)
        (then
          (local.set $qb (i32.mul (local.get $bh0) (local.get $T))) (local.set $qs (i32.const 1))
          (local.set $kb (i32.mul (local.get $bh0) (local.get $S))) (local.set $ks (i32.const 1)))
        (else
          (local.set $qb (i32.add (i32.mul (i32.mul (local.get $b) (local.get $T)) (local.get $H))
            (local.get $h)))
          (local.set $qs (local.get $H))
          (local.set $kb (i32.add (i32.mul (i32.mul (local.get $b) (local.get $S)) (local.get $H))
            (local.get $h)))
          (local.set $ks (local.get $H))))
      (local.set $t (i32.const 0))
      (block $rows_done (loop $row
        (br_if $rows_done (i32.ge_u (local.get $t) (local.get $T)))
        (local.set $r (i32.add (local.get $qb) (i32.mul (local.get $t) (local.get $qs))))
        (local.set $any (call $att_scores
          (i32.add (local.get $q) (i32.shl (i32.mul (local.get $r) (local.get $D)) (i32.const 2)))
          (local.get $k) (local.get $kb) (local.get $ks) (local.get $mask) (local.get $b)
          (local.get $t) (local.get $T) (local.get $S) (local.get $D) (local.get $causal)
          (local.get $scale) (local.get $z) (local.get $ok)))
        (if (local.get $any)
          (then
            ;; m, then e[s] = exp(z[s] − m) for allowed keys (else exp(−∞) = 0), Σ e, e /= Σ
            (local.set $m (f64.const -inf))
            (local.set $s (i32.const 0))
            (block $d1 (loop $l1
              (br_if $d1 (i32.ge_s (local.get $s) (local.get $S)))
              (if (i32.load (i32.add (local.get $ok) (i32.shl (local.get $s) (i32.const 2))))
                (then
                  (local.set $x (f64.load (i32.add (local.get $z) (i32.shl (local.get $s) (i32.const 3)))))
                  (if (f64.gt (local.get $x) (local.get $m)) (then (local.set $m (local.get $x))))))
              (local.set $s (i32.add (local.get $s) (i32.const 1)))
              (br $l1)))
            (local.set $s (i32.const 0))
            (block $d2 (loop $l2
              (br_if $d2 (i32.ge_s (local.get $s) (local.get $S)))
              (f64.store (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3)))
                (select
                  (f64.sub (f64.load (i32.add (local.get $z) (i32.shl (local.get $s) (i32.const 3))))
                    (local.get $m))
                  (f64.const -inf)
                  (i32.load (i32.add (local.get $ok) (i32.shl (local.get $s) (i32.const 2))))))
              (local.set $s (i32.add (local.get $s) (i32.const 1)))
              (br $l2)))
            (call $exp_block (local.get $e) (local.get $S))
            (local.set $sum (f64.const 0))
            (local.set $s (i32.const 0))
            (block $d3 (loop $l3
              (br_if $d3 (i32.ge_s (local.get $s) (local.get $S)))
              (local.set $sum (f64.add (local.get $sum)
                (f64.load (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3))))))
              (local.set $s (i32.add (local.get $s) (i32.const 1)))
              (br $l3)))
            (local.set $s (i32.const 0))
            (block $d4 (loop $l4
              (br_if $d4 (i32.ge_s (local.get $s) (local.get $S)))
              (f64.store (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3)))
                (f64.div (f64.load (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3))))
                  (local.get $sum)))
              (local.set $s (i32.add (local.get $s) (i32.const 1)))
              (br $l4)))
            (f64.store offset=0 (i32.add (local.get $st) (i32.shl (local.get $r) (i32.const 4)))
              (local.get $m))
            (f64.store offset=8 (i32.add (local.get $st) (i32.shl (local.get $r) (i32.const 4)))
              (local.get $sum)))
          (else
            ;; no key allowed: uniform weights 1/S
            (local.set $w (f64.div (f64.const 1) (f64.convert_i32_s (local.get $S))))
            (local.set $s (i32.const 0))
            (block $d5 (loop $l5
              (br_if $d5 (i32.ge_s (local.get $s) (local.get $S)))
              (f64.store (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3))) (local.get $w))
              (local.set $s (i32.add (local.get $s) (i32.const 1)))
              (br $l5)))
            (f64.store offset=0 (i32.add (local.get $st) (i32.shl (local.get $r) (i32.const 4)))
              (f64.const -inf))
            (f64.store offset=8 (i32.add (local.get $st) (i32.shl (local.get $r) (i32.const 4)))
              (f64.const -1))))
        ;; out row = Σ_s w_s·v_s over the nonzero weights, in order
        (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $D) (i32.const 3)))
        (local.set $s (i32.const 0))
        (block $d6 (loop $l6
          (br_if $d6 (i32.ge_s (local.get $s) (local.get $S)))
          (local.set $w (f64.load (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3)))))
          (if (f64.ne (local.get $w) (f64.const 0))
            (then (call $axpy (local.get $acc) (local.get $w)
              (i32.add (local.get $v) (i32.shl (i32.mul (i32.add (local.get $kb)
                (i32.mul (local.get $s) (local.get $ks))) (local.get $D)) (i32.const 2)))
              (local.get $D))))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br $l6)))
        (call $store_row
          (i32.add (local.get $out) (i32.shl (i32.mul (local.get $r) (local.get $D)) (i32.const 2)))
          (local.get $acc) (local.get $D))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $row)))
      (local.set $bh0 (i32.add (local.get $bh0) (i32.const 1)))
      (br $head))))

  (func $align16 (param $x i32) (result i32)
    (i32.and (i32.add (local.get $x) (i32.const 15)) (i32.const -16)))

  ;; Backward of heads bh0 .. bh1-1. Words at pb: q k v mask(0: none) o lse dO dlse(0: none)
  ;; dq dk dv H T S D bhtd causal scratch stride, then the scale (f64) at byte 80.
  ;; Thread scratch: z [S] f64, e [S + 1] f64, ok [S] i32, dq row [D + 1] f64, then the dK and
  ;; dV sums of the head, [S·D + 1] f64 each.
  (func $att_bwd (param $pb i32) (param $bh0 i32) (param $bh1 i32) (param $tid i32)
    (local $q i32) (local $k i32) (local $v i32) (local $mask i32) (local $o i32) (local $lse i32)
    (local $dO i32) (local $dlse i32) (local $dq i32) (local $dk i32) (local $dv i32)
    (local $H i32) (local $T i32) (local $S i32) (local $D i32) (local $bhtd i32) (local $causal i32)
    (local $scale f64) (local $z i32) (local $e i32) (local $ok i32) (local $dqr i32) (local $dka i32)
    (local $dva i32) (local $b i32) (local $h i32) (local $qb i32) (local $qs i32) (local $kb i32)
    (local $ks i32) (local $t i32) (local $s i32) (local $r i32) (local $any i32) (local $qo i32)
    (local $so i32) (local $sd i32) (local $delta f64) (local $prob f64) (local $ds f64) (local $l f64)
    (local.set $q (i32.load offset=0 (local.get $pb)))
    (local.set $k (i32.load offset=4 (local.get $pb)))
    (local.set $v (i32.load offset=8 (local.get $pb)))
    (local.set $mask (i32.load offset=12 (local.get $pb)))
    (local.set $o (i32.load offset=16 (local.get $pb)))
    (local.set $lse (i32.load offset=20 (local.get $pb)))
    (local.set $dO (i32.load offset=24 (local.get $pb)))
    (local.set $dlse (i32.load offset=28 (local.get $pb)))
    (local.set $dq (i32.load offset=32 (local.get $pb)))
    (local.set $dk (i32.load offset=36 (local.get $pb)))
    (local.set $dv (i32.load offset=40 (local.get $pb)))
    (local.set $H (i32.load offset=44 (local.get $pb)))
    (local.set $T (i32.load offset=48 (local.get $pb)))
    (local.set $S (i32.load offset=52 (local.get $pb)))
    (local.set $D (i32.load offset=56 (local.get $pb)))
    (local.set $bhtd (i32.load offset=60 (local.get $pb)))
    (local.set $causal (i32.load offset=64 (local.get $pb)))
    (local.set $z (i32.add (i32.load offset=68 (local.get $pb))
      (i32.mul (local.get $tid) (i32.load offset=72 (local.get $pb)))))
    (local.set $scale (f64.load offset=80 (local.get $pb)))
    (local.set $e (i32.add (local.get $z) (call $align16 (i32.shl (local.get $S) (i32.const 3)))))
    (local.set $ok (i32.add (local.get $e) (call $align16
      (i32.shl (i32.add (local.get $S) (i32.const 1)) (i32.const 3)))))
    (local.set $dqr (i32.add (local.get $ok) (call $align16 (i32.shl (local.get $S) (i32.const 2)))))
    (local.set $dka (i32.add (local.get $dqr) (call $align16
      (i32.shl (i32.add (local.get $D) (i32.const 1)) (i32.const 3)))))
    (local.set $dva (i32.add (local.get $dka) (call $align16 (i32.shl
      (i32.add (i32.mul (local.get $S) (local.get $D)) (i32.const 1)) (i32.const 3)))))
    (block $heads_done (loop $head
      (br_if $heads_done (i32.ge_u (local.get $bh0) (local.get $bh1)))
      (local.set $b (i32.div_u (local.get $bh0) (local.get $H)))
      (local.set $h (i32.rem_u (local.get $bh0) (local.get $H)))
      (if (local.get $bhtd)
        (then
          (local.set $qb (i32.mul (local.get $bh0) (local.get $T))) (local.set $qs (i32.const 1))
          (local.set $kb (i32.mul (local.get $bh0) (local.get $S))) (local.set $ks (i32.const 1)))
        (else
          (local.set $qb (i32.add (i32.mul (i32.mul (local.get $b) (local.get $T)) (local.get $H))
            (local.get $h)))
          (local.set $qs (local.get $H))
          (local.set $kb (i32.add (i32.mul (i32.mul (local.get $b) (local.get $S)) (local.get $H))
            (local.get $h)))
          (local.set $ks (local.get $H))))
      (memory.fill (local.get $dka) (i32.const 0)
        (i32.shl (i32.mul (local.get $S) (local.get $D)) (i32.const 3)))
      (memory.fill (local.get $dva) (i32.const 0)
        (i32.shl (i32.mul (local.get $S) (local.get $D)) (i32.const 3)))
      (local.set $t (i32.const 0))
      (block $rows_done (loop $row
        (br_if $rows_done (i32.ge_u (local.get $t) (local.get $T)))
        (local.set $r (i32.add (local.get $qb) (i32.mul (local.get $t) (local.get $qs))))
        (local.set $qo (i32.shl (i32.mul (local.get $r) (local.get $D)) (i32.const 2)))
        ;; Δ = Σ dO·o (− dlse)
        (local.set $delta (f64.const 0))
        (if (local.get $dlse)
          (then (local.set $delta (f64.neg (f64.promote_f32 (f32.load (i32.add (local.get $dlse)
            (i32.shl (local.get $r) (i32.const 2)))))))))
        (local.set $s (i32.const 0))
        (block $dd (loop $ld
          (br_if $dd (i32.ge_s (local.get $s) (local.get $D)))
          (local.set $delta (f64.add (local.get $delta) (f64.mul
            (f64.promote_f32 (f32.load (i32.add (i32.add (local.get $dO) (local.get $qo))
              (i32.shl (local.get $s) (i32.const 2)))))
            (f64.promote_f32 (f32.load (i32.add (i32.add (local.get $o) (local.get $qo))
              (i32.shl (local.get $s) (i32.const 2))))))))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br $ld)))
        (local.set $any (call $att_scores (i32.add (local.get $q) (local.get $qo))
          (local.get $k) (local.get $kb) (local.get $ks) (local.get $mask) (local.get $b)
          (local.get $t) (local.get $T) (local.get $S) (local.get $D) (local.get $causal)
          (local.get $scale) (local.get $z) (local.get $ok)))
        ;; e[s] = exp(z[s] − lse) for the allowed keys
        (local.set $l (f64.promote_f32 (f32.load (i32.add (local.get $lse)
          (i32.shl (local.get $r) (i32.const 2))))))
        (local.set $s (i32.const 0))
        (block $d1 (loop $l1
          (br_if $d1 (i32.ge_s (local.get $s) (local.get $S)))
          (f64.store (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3)))
            (select
              (f64.sub (f64.load (i32.add (local.get $z) (i32.shl (local.get $s) (i32.const 3))))
                (local.get $l))
              (f64.const -inf)
              (i32.load (i32.add (local.get $ok) (i32.shl (local.get $s) (i32.const 2))))))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br $l1)))
        (call $exp_block (local.get $e) (local.get $S))
        (memory.fill (local.get $dqr) (i32.const 0) (i32.shl (local.get $D) (i32.const 3)))
        (local.set $s (i32.const 0))
        (block $d2 (loop $l2
          (br_if $d2 (i32.ge_s (local.get $s) (local.get $S)))
          (local.set $so (i32.shl (i32.mul (i32.add (local.get $kb)
            (i32.mul (local.get $s) (local.get $ks))) (local.get $D)) (i32.const 2)))
          (local.set $sd (i32.shl (i32.mul (local.get $s) (local.get $D)) (i32.const 3)))
          (if (i32.load (i32.add (local.get $ok) (i32.shl (local.get $s) (i32.const 2))))
            (then
              (local.set $prob (f64.load (i32.add (local.get $e) (i32.shl (local.get $s) (i32.const 3)))))
              (local.set $ds (f64.mul (f64.mul (local.get $prob) (f64.sub
                (call $axpy_dot (i32.add (local.get $dva) (local.get $sd)) (local.get $prob)
                  (i32.add (local.get $dO) (local.get $qo)) (i32.add (local.get $v) (local.get $so))
                  (local.get $D))
                (local.get $delta))) (local.get $scale)))
              (call $axpy2 (local.get $dqr) (i32.add (local.get $k) (local.get $so))
                (i32.add (local.get $dka) (local.get $sd)) (i32.add (local.get $q) (local.get $qo))
                (local.get $ds) (local.get $D)))
            (else
              ;; a row with no allowed key gave every key weight 1/S
              (if (i32.eqz (local.get $any))
                (then (call $axpy (i32.add (local.get $dva) (local.get $sd))
                  (f64.div (f64.const 1) (f64.convert_i32_s (local.get $S)))
                  (i32.add (local.get $dO) (local.get $qo)) (local.get $D))))))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br $l2)))
        (call $store_row (i32.add (local.get $dq) (local.get $qo)) (local.get $dqr) (local.get $D))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $row)))
      (local.set $s (i32.const 0))
      (block $d3 (loop $l3
        (br_if $d3 (i32.ge_s (local.get $s) (local.get $S)))
        (local.set $so (i32.shl (i32.mul (i32.add (local.get $kb)
          (i32.mul (local.get $s) (local.get $ks))) (local.get $D)) (i32.const 2)))
        (local.set $sd (i32.shl (i32.mul (local.get $s) (local.get $D)) (i32.const 3)))
        (call $store_row (i32.add (local.get $dk) (local.get $so)) (i32.add (local.get $dka) (local.get $sd))
          (local.get $D))
        (call $store_row (i32.add (local.get $dv) (local.get $so)) (i32.add (local.get $dva) (local.get $sd))
          (local.get $D))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $l3)))
      (local.set $bh0 (i32.add (local.get $bh0) (i32.const 1)))
      (br $head))))

  ;; AdamW (ADAMW_FLAT.cpu in ops/optim_ops.ts) over n f32 elements of p, g, m, v, with
  ;; decay factor d and the f64 constants at c: b1 c1 b2 c2 stepSize bc2Sqrt eps scale.
  ;; Per element, in f64, each stored value rounded to f32 as the TypeScript stores it:
  ;;   gi = g·scale; p' = f32(p·d); m' = f32(b1·m + c1·gi); v' = f32(b2·v + (c2·gi)·gi);
  ;;   p = f32(p' − (stepSize·m') / (√v' / bc2Sqrt + eps)).
  ;; Two elements per step in f64x2 lanes (the same IEEE operations), then one alone.
  (func $adamw (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $c i32) (param $d f64)
    (local $b1 v128) (local $c1 v128) (local $b2 v128) (local $c2 v128) (local $st v128)
    (local $bc v128) (local $eps v128) (local $sc v128) (local $dd v128)
    (local $gi v128) (local $pp v128) (local $mm v128) (local $vv v128)
    (local $gs f64) (local $ps f64) (local $ms f64) (local $vs f64)
    (local.set $b1 (v128.load64_splat offset=0 (local.get $c)))
    (local.set $c1 (v128.load64_splat offset=8 (local.get $c)))
    (local.set $b2 (v128.load64_splat offset=16 (local.get $c)))
    (local.set $c2 (v128.load64_splat offset=24 (local.get $c)))
    (local.set $st (v128.load64_splat offset=32 (local.get $c)))
    (local.set $bc (v128.load64_splat offset=40 (local.get $c)))
    (local.set $eps (v128.load64_splat offset=48 (local.get $c)))
    (local.set $sc (v128.load64_splat offset=56 (local.get $c)))
    (local.set $dd (f64x2.splat (local.get $d)))
    (block $done
      (loop $pair
        (br_if $done (i32.lt_u (local.get $n) (i32.const 2)))
        (local.set $gi (f64x2.mul
          (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $g))) (local.get $sc)))
        (local.set $pp (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.mul
          (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p))) (local.get $dd)))))
        (local.set $mm (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add
          (f64x2.mul (local.get $b1) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $m))))
          (f64x2.mul (local.get $c1) (local.get $gi))))))
        (local.set $vv (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add
          (f64x2.mul (local.get $b2) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $v))))
          (f64x2.mul (f64x2.mul (local.get $c2) (local.get $gi)) (local.get $gi))))))
        (v128.store64_lane 0 (local.get $m) (f32x4.demote_f64x2_zero (local.get $mm)))
        (v128.store64_lane 0 (local.get $v) (f32x4.demote_f64x2_zero (local.get $vv)))
        (v128.store64_lane 0 (local.get $p) (f32x4.demote_f64x2_zero (f64x2.sub (local.get $pp)
          (f64x2.div (f64x2.mul (local.get $st) (local.get $mm))
            (f64x2.add (f64x2.div (f64x2.sqrt (local.get $vv)) (local.get $bc))
              (local.get $eps))))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (local.set $g (i32.add (local.get $g) (i32.const 8)))
        (local.set $m (i32.add (local.get $m) (i32.const 8)))
        (local.set $v (i32.add (local.get $v) (i32.const 8)))
        (local.set $n (i32.sub (local.get $n) (i32.const 2)))
        (br $pair)))
    (if (i32.eqz (local.get $n)) (then (return)))
    (local.set $gs (f64.mul (f64.promote_f32 (f32.load (local.get $g)))
      (f64.load offset=56 (local.get $c))))
    (local.set $ps (f64.promote_f32 (f32.demote_f64
      (f64.mul (f64.promote_f32 (f32.load (local.get $p))) (local.get $d)))))
    (local.set $ms (f64.promote_f32 (f32.demote_f64 (f64.add
      (f64.mul (f64.load offset=0 (local.get $c)) (f64.promote_f32 (f32.load (local.get $m))))
      (f64.mul (f64.load offset=8 (local.get $c)) (local.get $gs))))))
    (local.set $vs (f64.promote_f32 (f32.demote_f64 (f64.add
      (f64.mul (f64.load offset=16 (local.get $c)) (f64.promote_f32 (f32.load (local.get $v))))
      (f64.mul (f64.mul (f64.load offset=24 (local.get $c)) (local.get $gs)) (local.get $gs))))))
    (f32.store (local.get $m) (f32.demote_f64 (local.get $ms)))
    (f32.store (local.get $v) (f32.demote_f64 (local.get $vs)))
    (f32.store (local.get $p) (f32.demote_f64 (f64.sub (local.get $ps)
      (f64.div (f64.mul (f64.load offset=32 (local.get $c)) (local.get $ms))
        (f64.add (f64.div (f64.sqrt (local.get $vs)) (f64.load offset=40 (local.get $c)))
          (f64.load offset=48 (local.get $c))))))))

  ;; hashU32(seed, i) of tensor/rng.ts (u32 arithmetic, so the same bits).
  (func $hash (param $seed i32) (param $i i32) (result i32)
    (local $x i32)
    (local.set $x (i32.xor (local.get $i) (i32.mul (local.get $seed) (i32.const 0x9e3779b9))))
    (local.set $x (i32.mul (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 16)))
      (i32.const 0x21f0aaad)))
    (local.set $x (i32.mul (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 15)))
      (i32.const 0x735a2d97)))
    (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 15))))
    (local.set $x (i32.add (local.get $x) (local.get $seed)))
    (local.set $x (i32.mul (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 16)))
      (i32.const 0x21f0aaad)))
    (local.set $x (i32.mul (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 15)))
      (i32.const 0x735a2d97)))
    (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 15))))

  ;; $hash on four counters at once (i32x4 lanes, the same u32 arithmetic).
  (func $hash4 (param $seed i32) (param $i v128) (result v128)
    (local $x v128)
    (local.set $x (v128.xor (local.get $i)
      (i32x4.splat (i32.mul (local.get $seed) (i32.const 0x9e3779b9)))))
    (local.set $x (i32x4.mul (v128.xor (local.get $x) (i32x4.shr_u (local.get $x) (i32.const 16)))
      (i32x4.splat (i32.const 0x21f0aaad))))
    (local.set $x (i32x4.mul (v128.xor (local.get $x) (i32x4.shr_u (local.get $x) (i32.const 15)))
      (i32x4.splat (i32.const 0x735a2d97))))
    (local.set $x (v128.xor (local.get $x) (i32x4.shr_u (local.get $x) (i32.const 15))))
    (local.set $x (i32x4.add (local.get $x) (i32x4.splat (local.get $seed))))
    (local.set $x (i32x4.mul (v128.xor (local.get $x) (i32x4.shr_u (local.get $x) (i32.const 16)))
      (i32x4.splat (i32.const 0x21f0aaad))))
    (local.set $x (i32x4.mul (v128.xor (local.get $x) (i32x4.shr_u (local.get $x) (i32.const 15)))
      (i32x4.splat (i32.const 0x735a2d97))))
    (v128.xor (local.get $x) (i32x4.shr_u (local.get $x) (i32.const 15))))

  ;; The softmax rows of the attention matmul path (softmaxRows in ops/attention.ts), rows
  ;; r0 .. r1−1 of z [rows, S] (f32, heads-major; row r is head r / T, query t = r mod T, batch
  ;; (r / T) / H), thread tid. Key s of row r is allowed when s ≤ t + S − T (causal) and, with
  ;; `allowed` (f32 [B, S]; 0: none), allowed[b, s] ≠ 0. Each allowed z becomes f32(z·scale),
  ;; every other −∞; m is the largest f64 product. A row with m = −∞ gets prob 1/S. Else, mode 0:
  ;; prob = f32(e) with e = expF64(z − m), then f32(prob / Σe) (Σ in order over the unrounded e),
  ;; stats[2r] = m, stats[2r + 1] = Σe; mode 1: prob = f32(expF64(z − stats[2r])) (the lse in),
  ;; stats[2r + 1] = m.
  (func $softmax_rows (param $z i32) (param $prob i32) (param $allowed i32) (param $stats i32)
    (param $r0 i32) (param $r1 i32) (param $T i32) (param $S i32) (param $scale f64) (param $H i32)
    (param $causal i32) (param $mode i32) (param $tid i32)
    (local $r i32) (local $t i32) (local $b i32) (local $lim i32) (local $s i32) (local $zp i32)
    (local $pp i32) (local $ap i32) (local $sp i32) (local $x f64) (local $m f64) (local $sum f64)
    (local $e f64) (local $c i32) (local $j i32) (local $scr i32) (local $st i32) (local $sv v128)
    (local $pv v128)
    (local.set $scr (call $scratch (local.get $tid)))
    (local.set $r (local.get $r0))
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $r) (local.get $r1)))
      (local.set $t (i32.rem_u (local.get $r) (local.get $T)))
      (local.set $b (i32.div_u (i32.div_u (local.get $r) (local.get $T)) (local.get $H)))
      (local.set $lim (select
        (i32.sub (i32.add (local.get $t) (local.get $S)) (local.get $T))
        (i32.sub (local.get $S) (i32.const 1))
        (local.get $causal)))
      (local.set $zp (i32.add (local.get $z) (i32.shl (i32.mul (local.get $r) (local.get $S)) (i32.const 2))))
      (local.set $pp (i32.add (local.get $prob) (i32.shl (i32.mul (local.get $r) (local.get $S)) (i32.const 2))))
      (local.set $ap (select
        (i32.add (local.get $allowed) (i32.shl (i32.mul (local.get $b) (local.get $S)) (i32.const 2)))
        (i32.const 0)
        (local.get $allowed)))
      (local.set $st (i32.add (local.get $stats) (i32.shl (local.get $r) (i32.const 4))))
      ;; pass 1: scale the allowed, −∞ the rest, the largest product
      (local.set $m (f64.const -inf))
      (local.set $s (i32.const 0))
      (block $p1_done (loop $p1
        (br_if $p1_done (i32.ge_u (local.get $s) (local.get $S)))
        (local.set $sp (i32.add (local.get $zp) (i32.shl (local.get $s) (i32.const 2))))
        (if (i32.and (i32.le_s (local.get $s) (local.get $lim))
              (i32.or (i32.eqz (local.get $ap))
                (f32.ne (f32.load (i32.add (local.get $ap) (i32.shl (local.get $s) (i32.const 2))))
                  (f32.const 0))))
          (then
            (local.set $x (f64.mul (f64.promote_f32 (f32.load (local.get $sp))) (local.get $scale)))
            (f32.store (local.get $sp) (f32.demote_f64 (local.get $x)))
            (if (f64.gt (local.get $x) (local.get $m)) (then (local.set $m (local.get $x)))))
          (else (f32.store (local.get $sp) (f32.const -inf))))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $p1)))
      (if (f64.eq (local.get $m) (f64.const -inf))
        (then
          ;; no allowed key: uniform
          (local.set $s (i32.const 0))
          (block $u_done (loop $u
            (br_if $u_done (i32.ge_u (local.get $s) (local.get $S)))
            (f32.store (i32.add (local.get $pp) (i32.shl (local.get $s) (i32.const 2)))
              (f32.demote_f64 (f64.div (f64.const 1) (f64.convert_i32_u (local.get $S)))))
            (local.set $s (i32.add (local.get $s) (i32.const 1)))
            (br $u)))
          (if (local.get $mode)
            (then (f64.store offset=8 (local.get $st) (f64.const -inf)))
            (else (f64.store (local.get $st) (f64.const -inf))
              (f64.store offset=8 (local.get $st) (f64.const 0)))))
        (else
          ;; pass 2, in blocks of 128: e = expF64(z − m) (mode 1: z − lse), prob = f32(e), Σe
          (if (local.get $mode)
            (then (local.set $x (f64.load (local.get $st))))
            (else (local.set $x (local.get $m))))
          (local.set $sum (f64.const 0))
          (local.set $s (i32.const 0))
          (block $p2_done (loop $p2
            (br_if $p2_done (i32.ge_u (local.get $s) (local.get $S)))
            (local.set $c (i32.sub (local.get $S) (local.get $s)))
            (local.set $c (select (i32.const 128) (local.get $c) (i32.gt_u (local.get $c) (i32.const 128))))
            (local.set $j (i32.const 0))
            (block $st_done (loop $stage
              (br_if $st_done (i32.ge_u (local.get $j) (local.get $c)))
              (f64.store (i32.add (local.get $scr) (i32.shl (local.get $j) (i32.const 3)))
                (f64.sub (f64.promote_f32 (f32.load (i32.add (local.get $zp)
                  (i32.shl (i32.add (local.get $s) (local.get $j)) (i32.const 2)))))
                  (local.get $x)))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br $stage)))
            (call $exp_block (local.get $scr) (local.get $c))
            (local.set $j (i32.const 0))
            (block $c_done (loop $consume
              (br_if $c_done (i32.ge_u (local.get $j) (local.get $c)))
              (local.set $e (f64.load (i32.add (local.get $scr) (i32.shl (local.get $j) (i32.const 3)))))
              (f32.store (i32.add (local.get $pp) (i32.shl (i32.add (local.get $s) (local.get $j)) (i32.const 2)))
                (f32.demote_f64 (local.get $e)))
              (local.set $sum (f64.add (local.get $sum) (local.get $e)))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br $consume)))
            (local.set $s (i32.add (local.get $s) (local.get $c)))
            (br $p2)))
          (if (local.get $mode)
            (then (f64.store offset=8 (local.get $st) (local.get $m)))
            (else
              ;; pass 3: normalise the rounded probabilities, four at a time (f64x2 divisions:
              ;; the same bits as one at a time), then the tail
              (local.set $sv (f64x2.splat (local.get $sum)))
              (local.set $s (i32.const 0))
              (block $q_done (loop $quad
                (br_if $q_done (i32.gt_u (i32.add (local.get $s) (i32.const 4)) (local.get $S)))
                (local.set $sp (i32.add (local.get $pp) (i32.shl (local.get $s) (i32.const 2))))
                (local.set $pv (v128.load (local.get $sp)))
                (v128.store (local.get $sp) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
                  (f32x4.demote_f64x2_zero
                    (f64x2.div (f64x2.promote_low_f32x4 (local.get $pv)) (local.get $sv)))
                  (f32x4.demote_f64x2_zero (f64x2.div
                    (f64x2.promote_low_f32x4
                      (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $pv) (local.get $pv)))
                    (local.get $sv)))))
                (local.set $s (i32.add (local.get $s) (i32.const 4)))
                (br $quad)))
              (block $p3_done (loop $p3
                (br_if $p3_done (i32.ge_u (local.get $s) (local.get $S)))
                (local.set $sp (i32.add (local.get $pp) (i32.shl (local.get $s) (i32.const 2))))
                (f32.store (local.get $sp) (f32.demote_f64
                  (f64.div (f64.promote_f32 (f32.load (local.get $sp))) (local.get $sum))))
                (local.set $s (i32.add (local.get $s) (i32.const 1)))
                (br $p3)))
              (f64.store (local.get $st) (local.get $m))
              (f64.store offset=8 (local.get $st) (local.get $sum))))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $row))))

  ;; The keep mask of dropout (keepMask in ops/residual.ts) for elements i .. i+n-1, one byte
  ;; each at out: 1 where hashU32(seed, i) >>> 8 >= thr, else 0. Sixteen per step (four
  ;; hash4's narrowed to bytes), then one at a time.
  (func $keep_mask (param $out i32) (param $n i32) (param $i i32) (param $seed i32) (param $thr i32)
    (local $iv v128) (local $tv v128) (local $one v128) (local $four v128)
    (local.set $iv (i32x4.add (i32x4.splat (local.get $i)) (v128.const i32x4 0 1 2 3)))
    (local.set $tv (i32x4.splat (local.get $thr)))
    (local.set $one (i8x16.splat (i32.const 1)))
    (local.set $four (i32x4.splat (i32.const 4)))
    (block $done
      (loop $sixteen
        (br_if $done (i32.lt_u (local.get $n) (i32.const 16)))
        ;; each lane -1 (kept) or 0; narrowing keeps -1 and 0; the and makes them 1 and 0
        (v128.store (local.get $out) (v128.and (local.get $one)
          (i8x16.narrow_i16x8_s
            (i16x8.narrow_i32x4_s
              (i32x4.ge_u (i32x4.shr_u (call $hash4 (local.get $seed) (local.get $iv))
                (i32.const 8)) (local.get $tv))
              (i32x4.ge_u (i32x4.shr_u (call $hash4 (local.get $seed)
                (i32x4.add (local.get $iv) (local.get $four))) (i32.const 8)) (local.get $tv)))
            (i16x8.narrow_i32x4_s
              (i32x4.ge_u (i32x4.shr_u (call $hash4 (local.get $seed)
                (i32x4.add (local.get $iv) (i32x4.splat (i32.const 8)))) (i32.const 8))
                (local.get $tv))
              (i32x4.ge_u (i32x4.shr_u (call $hash4 (local.get $seed)
                (i32x4.add (local.get $iv) (i32x4.splat (i32.const 12)))) (i32.const 8))
                (local.get $tv))))))
        (local.set $iv (i32x4.add (local.get $iv) (i32x4.splat (i32.const 16))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 16)))
        (br $sixteen)))
    (if (i32.eqz (local.get $n)) (then (return)))
    (loop $e
      (i32.store8 (local.get $out)
        (i32.ge_u (i32.shr_u (call $hash (local.get $seed) (local.get $i)) (i32.const 8))
          (local.get $thr)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $out (i32.add (local.get $out) (i32.const 1)))
      (br_if $e (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))

  ;; Dropout (DROPOUT.cpu in ops/dropout.ts) of n f32 from x to out, elements i0 .. i0+n-1:
  ;; out[i] = hashU32(seed, i) >>> 8 >= thr ? f32(x[i]·scale) : 0, the product in f64.
  ;; Four elements per step (products in two f64x2), then one at a time.
  (func $dropout (param $x i32) (param $out i32) (param $n i32) (param $i i32) (param $seed i32)
    (param $thr i32) (param $scale f64)
    (local $iv v128) (local $xv v128) (local $sv v128) (local $keep v128)
    (local.set $iv (i32x4.add (i32x4.splat (local.get $i)) (v128.const i32x4 0 1 2 3)))
    (local.set $sv (f64x2.splat (local.get $scale)))
    (block $done
      (loop $quad
        (br_if $done (i32.lt_u (local.get $n) (i32.const 4)))
        (local.set $xv (v128.load (local.get $x)))
        (local.set $keep (i32x4.ge_u
          (i32x4.shr_u (call $hash4 (local.get $seed) (local.get $iv)) (i32.const 8))
          (i32x4.splat (local.get $thr))))
        (v128.store (local.get $out) (v128.and (local.get $keep)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero
              (f64x2.mul (f64x2.promote_low_f32x4 (local.get $xv)) (local.get $sv)))
            (f32x4.demote_f64x2_zero (f64x2.mul
              (f64x2.promote_low_f32x4
                (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $xv) (local.get $xv)))
              (local.get $sv))))))
        (local.set $iv (i32x4.add (local.get $iv) (i32x4.splat (i32.const 4))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 4)))
        (br $quad)))
    (if (i32.eqz (local.get $n)) (then (return)))
    (loop $e
      (f32.store (local.get $out)
        (select
          (f32.demote_f64 (f64.mul (f64.promote_f32 (f32.load (local.get $x))) (local.get $scale)))
          (f32.const 0)
          (i32.ge_u (i32.shr_u (call $hash (local.get $seed) (local.get $i)) (i32.const 8))
            (local.get $thr))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (br_if $e (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))

  ;; Bias rows (addRows in ops/matmul.ts): c[r, j] += bias[j] for rows r of n f32 each, row
  ;; stride ldc f32; f32 sums (a double-rounded f64 sum gives the same bits, as the TypeScript
  ;; loop stores it). Four columns per step, then one at a time.
  (func $add_rows (param $c i32) (param $bias i32) (param $rows i32) (param $n i32) (param $ldc i32)
    (local $j i32) (local $n4 i32) (local $row i32)
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $r
      (br_if $done (i32.eqz (local.get $rows)))
      (local.set $j (i32.const 0))
      (block $d4 (loop $l4
        (br_if $d4 (i32.ge_u (local.get $j) (local.get $n4)))
        (local.set $row (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2))))
        (v128.store (local.get $row) (f32x4.add (v128.load (local.get $row))
          (v128.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $l4)))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $row (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2))))
        (f32.store (local.get $row) (f32.add (f32.load (local.get $row))
          (f32.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $l1)))
      (local.set $c (i32.add (local.get $c) (i32.shl (local.get $ldc) (i32.const 2))))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
      (br $r))))

  ;; Column sums (sumRows in ops/matmul.ts): out[j] = f32(Σ_r x[r, j]) over rows r in order,
  ;; summed in f64 in acc (n f64) for n columns of x, row stride ldx f32. Two columns per
  ;; step (an odd n sums one column more into acc[n], from the f32 past it, and does not
  ;; store it).
  (func $sum_rows (param $x i32) (param $rows i32) (param $n i32) (param $ldx i32)
    (param $acc i32) (param $out i32)
    (local $j i32) (local $r i32) (local $p i32)
    (block $d0 (loop $z
      (br_if $d0 (i32.ge_u (local.get $j) (local.get $n)))
      (v128.store (i32.add (local.get $acc) (i32.shl (local.get $j) (i32.const 3))) (v128.const i64x2 0 0))
      (local.set $j (i32.add (local.get $j) (i32.const 2)))
      (br $z)))
    (block $dr (loop $lr
      (br_if $dr (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $j (i32.const 0))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $p (i32.add (local.get $acc) (i32.shl (local.get $j) (i32.const 3))))
        (v128.store (local.get $p) (f64x2.add (v128.load (local.get $p))
          (call $load2 (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $lj)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $ldx) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $lr)))
    (local.set $j (i32.const 0))
    (block $ds (loop $ls
      (br_if $ds (i32.ge_u (local.get $j) (local.get $n)))
      (call $store2 (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 2)))
        (v128.load (i32.add (local.get $acc) (i32.shl (local.get $j) (i32.const 3))))
        (i32.eq (i32.add (local.get $j) (i32.const 1)) (local.get $n)))
      (local.set $j (i32.add (local.get $j) (i32.const 2)))
      (br $ls))))

  ;; LayerNorm forward (LAYER_NORM.cpu in ops/layer_norm.ts) of `rows` rows of C f32 at x:
  ;; per row, f64 sums in two lanes (even columns, odd columns; an odd C's last column goes
  ;; to the even lane), added at the end; m = s/C, rs = 1/√(v/C + eps) with v summed alike
  ;; over (x − m)²; y = ((x − m)·rs)·w + b rounded to f32; mean, rstd rounded to f32.
  (func $ln_fwd (param $x i32) (param $w i32) (param $b i32) (param $y i32) (param $mean i32)
    (param $rstd i32) (param $rows i32) (param $C i32) (param $eps f64)
    (local $j i32) (local $c2 i32) (local $acc v128) (local $mv v128) (local $rv v128)
    (local $d v128) (local $s f64) (local $m f64) (local $rs f64) (local $t f64) (local $o i32)
    (local.set $c2 (i32.and (local.get $C) (i32.const -2)))
    (block $done (loop $row
      (br_if $done (i32.eqz (local.get $rows)))
      ;; the mean
      (local.set $acc (v128.const i64x2 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $c2)))
        (local.set $acc (f64x2.add (local.get $acc)
          (call $load2 (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $l1)))
      (local.set $s (f64x2.extract_lane 0 (local.get $acc)))
      (if (i32.ne (local.get $c2) (local.get $C))
        (then (local.set $s (f64.add (local.get $s) (f64.promote_f32
          (f32.load (i32.add (local.get $x) (i32.shl (local.get $c2) (i32.const 2)))))))))
      (local.set $m (f64.div (f64.add (local.get $s) (f64x2.extract_lane 1 (local.get $acc)))
        (f64.convert_i32_u (local.get $C))))
      (local.set $mv (f64x2.splat (local.get $m)))
      ;; the variance
      (local.set $acc (v128.const i64x2 0 0))
      (local.set $j (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_u (local.get $j) (local.get $c2)))
        (local.set $d (f64x2.sub
          (call $load2 (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))))
          (local.get $mv)))
        (local.set $acc (f64x2.add (local.get $acc) (f64x2.mul (local.get $d) (local.get $d))))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $l2)))
      (local.set $s (f64x2.extract_lane 0 (local.get $acc)))
      (if (i32.ne (local.get $c2) (local.get $C))
        (then
          (local.set $t (f64.sub (f64.promote_f32
            (f32.load (i32.add (local.get $x) (i32.shl (local.get $c2) (i32.const 2)))))
            (local.get $m)))
          (local.set $s (f64.add (local.get $s) (f64.mul (local.get $t) (local.get $t))))))
      (local.set $rs (f64.div (f64.const 1) (f64.sqrt (f64.add
        (f64.div (f64.add (local.get $s) (f64x2.extract_lane 1 (local.get $acc)))
          (f64.convert_i32_u (local.get $C)))
        (local.get $eps)))))
      (local.set $rv (f64x2.splat (local.get $rs)))
      ;; the output
      (local.set $j (i32.const 0))
      (block $d3 (loop $l3
        (br_if $d3 (i32.ge_u (local.get $j) (local.get $C)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (call $store2 (i32.add (local.get $y) (local.get $o))
          (f64x2.add
            (f64x2.mul
              (f64x2.mul (f64x2.sub (call $load2 (i32.add (local.get $x) (local.get $o)))
                (local.get $mv)) (local.get $rv))
              (call $load2 (i32.add (local.get $w) (local.get $o))))
            (call $load2 (i32.add (local.get $b) (local.get $o))))
          (i32.eq (i32.add (local.get $j) (i32.const 1)) (local.get $C)))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $l3)))
      (f32.store (local.get $mean) (f32.demote_f64 (local.get $m)))
      (f32.store (local.get $rstd) (f32.demote_f64 (local.get $rs)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $C) (i32.const 2))))
      (local.set $y (i32.add (local.get $y) (i32.shl (local.get $C) (i32.const 2))))
      (local.set $mean (i32.add (local.get $mean) (i32.const 4)))
      (local.set $rstd (i32.add (local.get $rstd) (i32.const 4)))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
      (br $row))))

  ;; LayerNorm backward, dx of `rows` rows (LAYER_NORM_GRAD.cpu): h = (x − m)·rs, g = dy·w;
  ;; sg = Σ g, sgx = Σ g·h in two lanes as $ln_fwd sums; dx = rs·((g − sg/C) − h·(sgx/C)),
  ;; with acc (≠ 0) rounded to f32 first and acc added. m, rs from the f32 mean and rstd.
  (func $ln_bwd (param $x i32) (param $w i32) (param $mean i32) (param $rstd i32) (param $dy i32)
    (param $acc i32) (param $dx i32) (param $rows i32) (param $C i32)
    (local $j i32) (local $c2 i32) (local $o i32) (local $one i32)
    (local $mv v128) (local $rv v128) (local $h v128) (local $g v128) (local $ag v128)
    (local $agx v128) (local $mg v128) (local $mgx v128) (local $v v128)
    (local $m f64) (local $rs f64) (local $ht f64) (local $gt f64) (local $sg f64) (local $sgx f64)
    (local.set $c2 (i32.and (local.get $C) (i32.const -2)))
    (block $done (loop $row
      (br_if $done (i32.eqz (local.get $rows)))
      (local.set $m (f64.promote_f32 (f32.load (local.get $mean))))
      (local.set $rs (f64.promote_f32 (f32.load (local.get $rstd))))
      (local.set $mv (f64x2.splat (local.get $m)))
      (local.set $rv (f64x2.splat (local.get $rs)))
      (local.set $ag (v128.const i64x2 0 0))
      (local.set $agx (v128.const i64x2 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $c2)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (local.set $h (f64x2.mul (f64x2.sub (call $load2 (i32.add (local.get $x) (local.get $o)))
          (local.get $mv)) (local.get $rv)))
        (local.set $g (f64x2.mul (call $load2 (i32.add (local.get $dy) (local.get $o)))
          (call $load2 (i32.add (local.get $w) (local.get $o)))))
        (local.set $ag (f64x2.add (local.get $ag) (local.get $g)))
        (local.set $agx (f64x2.add (local.get $agx) (f64x2.mul (local.get $g) (local.get $h))))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $l1)))
      (local.set $sg (f64x2.extract_lane 0 (local.get $ag)))
      (local.set $sgx (f64x2.extract_lane 0 (local.get $agx)))
      (if (i32.ne (local.get $c2) (local.get $C))
        (then
          (local.set $o (i32.shl (local.get $c2) (i32.const 2)))
          (local.set $ht (f64.mul (f64.sub (f64.promote_f32
            (f32.load (i32.add (local.get $x) (local.get $o)))) (local.get $m)) (local.get $rs)))
          (local.set $gt (f64.mul (f64.promote_f32 (f32.load (i32.add (local.get $dy) (local.get $o))))
            (f64.promote_f32 (f32.load (i32.add (local.get $w) (local.get $o))))))
          (local.set $sg (f64.add (local.get $sg) (local.get $gt)))
          (local.set $sgx (f64.add (local.get $sgx) (f64.mul (local.get $gt) (local.get $ht))))))
      (local.set $mg (f64x2.splat (f64.div (f64.add (local.get $sg) (f64x2.extract_lane 1 (local.get $ag)))
        (f64.convert_i32_u (local.get $C)))))
      (local.set $mgx (f64x2.splat (f64.div
        (f64.add (local.get $sgx) (f64x2.extract_lane 1 (local.get $agx)))
        (f64.convert_i32_u (local.get $C)))))
      (local.set $j (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_u (local.get $j) (local.get $C)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (local.set $one (i32.eq (i32.add (local.get $j) (i32.const 1)) (local.get $C)))
        (local.set $h (f64x2.mul (f64x2.sub (call $load2 (i32.add (local.get $x) (local.get $o)))
          (local.get $mv)) (local.get $rv)))
        (local.set $g (f64x2.mul (call $load2 (i32.add (local.get $dy) (local.get $o)))
          (call $load2 (i32.add (local.get $w) (local.get $o)))))
        (local.set $v (f64x2.mul (local.get $rv) (f64x2.sub (f64x2.sub (local.get $g) (local.get $mg))
          (f64x2.mul (local.get $h) (local.get $mgx)))))
        (if (local.get $acc)
          (then (local.set $v (f64x2.add
            (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (local.get $v)))
            (call $load2 (i32.add (local.get $acc) (local.get $o)))))))
        (call $store2 (i32.add (local.get $dx) (local.get $o)) (local.get $v) (local.get $one))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $l2)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $C) (i32.const 2))))
      (local.set $dy (i32.add (local.get $dy) (i32.shl (local.get $C) (i32.const 2))))
      (if (local.get $acc)
        (then (local.set $acc (i32.add (local.get $acc) (i32.shl (local.get $C) (i32.const 2))))))
      (local.set $dx (i32.add (local.get $dx) (i32.shl (local.get $C) (i32.const 2))))
      (local.set $mean (i32.add (local.get $mean) (i32.const 4)))
      (local.set $rstd (i32.add (local.get $rstd) (i32.const 4)))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
      (br $row))))

  ;; LayerNorm backward, dw and db of n columns (LAYER_NORM_GRAD.cpu): over all R rows in
  ;; order, sw[j] += dy·h, sb[j] += dy in f64 (in sums: 2·(n + 2) f64), then rounded to f32
  ;; into dw, db. x, dy point at the first column; rows are ld f32 apart. Two columns per
  ;; step (an odd n sums one column more, past its range, into its own sums, not stored).
  (func $ln_bwd_cols (param $x i32) (param $mean i32) (param $rstd i32) (param $dy i32)
    (param $R i32) (param $n i32) (param $ld i32) (param $sums i32) (param $dw i32) (param $db i32)
    (local $j i32) (local $r i32) (local $o i32) (local $pw i32) (local $pb i32) (local $sb i32)
    (local $d v128) (local $mv v128) (local $rv v128)
    (local.set $sb (i32.add (local.get $sums) (i32.shl (i32.add (local.get $n) (i32.const 2))
      (i32.const 3))))
    (block $d0 (loop $z
      (br_if $d0 (i32.ge_u (local.get $j) (local.get $n)))
      (v128.store (i32.add (local.get $sums) (i32.shl (local.get $j) (i32.const 3))) (v128.const i64x2 0 0))
      (v128.store (i32.add (local.get $sb) (i32.shl (local.get $j) (i32.const 3))) (v128.const i64x2 0 0))
      (local.set $j (i32.add (local.get $j) (i32.const 2)))
      (br $z)))
    (block $dr (loop $lr
      (br_if $dr (i32.ge_u (local.get $r) (local.get $R)))
      (local.set $mv (f64x2.splat (f64.promote_f32 (f32.load (local.get $mean)))))
      (local.set $rv (f64x2.splat (f64.promote_f32 (f32.load (local.get $rstd)))))
      (local.set $j (i32.const 0))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (local.set $pw (i32.add (local.get $sums) (i32.shl (local.get $j) (i32.const 3))))
        (local.set $pb (i32.add (local.get $sb) (i32.shl (local.get $j) (i32.const 3))))
        (local.set $d (call $load2 (i32.add (local.get $dy) (local.get $o))))
        (v128.store (local.get $pw) (f64x2.add (v128.load (local.get $pw))
          (f64x2.mul (local.get $d) (f64x2.mul (f64x2.sub
            (call $load2 (i32.add (local.get $x) (local.get $o))) (local.get $mv)) (local.get $rv)))))
        (v128.store (local.get $pb) (f64x2.add (v128.load (local.get $pb)) (local.get $d)))
        (local.set $j (i32.add (local.get $j) (i32.const 2)))
        (br $lj)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $ld) (i32.const 2))))
      (local.set $dy (i32.add (local.get $dy) (i32.shl (local.get $ld) (i32.const 2))))
      (local.set $mean (i32.add (local.get $mean) (i32.const 4)))
      (local.set $rstd (i32.add (local.get $rstd) (i32.const 4)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $lr)))
    (local.set $j (i32.const 0))
    (block $ds (loop $ls
      (br_if $ds (i32.ge_u (local.get $j) (local.get $n)))
      (local.set $o (i32.eq (i32.add (local.get $j) (i32.const 1)) (local.get $n)))
      (call $store2 (i32.add (local.get $dw) (i32.shl (local.get $j) (i32.const 2)))
        (v128.load (i32.add (local.get $sums) (i32.shl (local.get $j) (i32.const 3)))) (local.get $o))
      (call $store2 (i32.add (local.get $db) (i32.shl (local.get $j) (i32.const 2)))
        (v128.load (i32.add (local.get $sb) (i32.shl (local.get $j) (i32.const 3)))) (local.get $o))
      (local.set $j (i32.add (local.get $j) (i32.const 2)))
      (br $ls))))

  ;; The residual forward (RESIDUAL.cpu in ops/residual.ts, f32) of elements i0 .. i1−1:
  ;; v = dropout ? (hashU32(seed, i) >>> 8 < thr ? 0 : f32(br·scale)) : f32(br·scale);
  ;; v = f32(f32(v·gamma[i mod C])·kp[floor(i/per)]); out = f32(x + v). gamma (f32) and kp (f64) are 1
  ;; where their pointer is 0. Each step rounds to f32 as the unfused ops stored it.
  (func $residual_fwd (param $x i32) (param $br i32) (param $gamma i32) (param $out i32)
    (param $path i32) (param $i i32) (param $i1 i32) (param $per i32) (param $C i32)
    (param $drop i32) (param $seed i32) (param $thr i32) (param $scale f64)
    (local $c i32) (local $b i32) (local $r i32) (local $o i32) (local $v f64) (local $kp f64)
    (local.set $c (i32.rem_u (local.get $i) (local.get $C)))
    (local.set $b (i32.div_u (local.get $i) (local.get $per)))
    (local.set $r (i32.rem_u (local.get $i) (local.get $per)))
    (local.set $kp (if (result f64) (local.get $path)
      (then (f64.load (i32.add (local.get $path) (i32.shl (local.get $b) (i32.const 3)))))
      (else (f64.const 1))))
    (block $done (loop $e
      (br_if $done (i32.ge_u (local.get $i) (local.get $i1)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $v (if (result f64)
        (i32.and (local.get $drop) (i32.lt_u
          (i32.shr_u (call $hash (local.get $seed) (local.get $i)) (i32.const 8)) (local.get $thr)))
        (then (f64.const 0))
        (else (f64.promote_f32 (f32.demote_f64 (f64.mul
          (f64.promote_f32 (f32.load (i32.add (local.get $br) (local.get $o)))) (local.get $scale)))))))
      (if (local.get $gamma)
        (then (local.set $v (f64.promote_f32 (f32.demote_f64 (f64.mul (local.get $v)
          (f64.promote_f32 (f32.load (i32.add (local.get $gamma)
            (i32.shl (local.get $c) (i32.const 2)))))))))))
      (local.set $v (f64.promote_f32 (f32.demote_f64 (f64.mul (local.get $v) (local.get $kp)))))
      (f32.store (i32.add (local.get $out) (local.get $o)) (f32.demote_f64 (f64.add
        (f64.promote_f32 (f32.load (i32.add (local.get $x) (local.get $o)))) (local.get $v))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $c (i32.add (local.get $c) (i32.const 1)))
      (if (i32.eq (local.get $c) (local.get $C)) (then (local.set $c (i32.const 0))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (if (i32.eq (local.get $r) (local.get $per))
        (then
          (local.set $r (i32.const 0))
          (local.set $b (i32.add (local.get $b) (i32.const 1)))
          (if (local.get $path)
            (then (local.set $kp (f64.load (i32.add (local.get $path)
              (i32.shl (local.get $b) (i32.const 3)))))))))
      (br $e))))

  ;; The residual backward (RESIDUAL_BACKWARD.cpu, f32) of columns j0 .. j1−1 over all rows:
  ;; kd = dropped ? 0 : scale; d = f32(dy·kp); with acc (≠ 0) acc[j] += f32(d·(kd = 0 ? 0 :
  ;; f32(br·kd))) in f64, rows in order, then dgamma[j] = f32(acc[j]); db = kd = 0 ? 0 :
  ;; f32(f32(d·gamma)·kd). gamma, kp and br as in $residual_fwd (br only with acc).
  (func $residual_bwd (param $dy i32) (param $br i32) (param $gamma i32) (param $db i32)
    (param $acc i32) (param $dgamma i32) (param $path i32) (param $rows i32) (param $per i32)
    (param $C i32) (param $j0 i32) (param $j1 i32) (param $drop i32) (param $seed i32)
    (param $thr i32) (param $scale f64)
    (local $j i32) (local $r i32) (local $i i32) (local $o i32) (local $kd f64) (local $d f64)
    (local $g f64) (local $kp f64) (local $s f64)
    (local.set $j (local.get $j0))
    (block $dj (loop $lj
      (br_if $dj (i32.ge_u (local.get $j) (local.get $j1)))
      (local.set $g (if (result f64) (local.get $gamma)
        (then (f64.promote_f32 (f32.load (i32.add (local.get $gamma)
          (i32.shl (local.get $j) (i32.const 2))))))
        (else (f64.const 1))))
      (local.set $s (f64.const 0))
      (local.set $r (i32.const 0))
      (block $dr (loop $lr
        (br_if $dr (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $i (i32.add (i32.mul (local.get $r) (local.get $C)) (local.get $j)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (local.set $kp (if (result f64) (local.get $path)
          (then (f64.load (i32.add (local.get $path)
            (i32.shl (i32.div_u (local.get $i) (local.get $per)) (i32.const 3)))))
          (else (f64.const 1))))
        (local.set $kd (if (result f64)
          (i32.and (local.get $drop) (i32.lt_u
            (i32.shr_u (call $hash (local.get $seed) (local.get $i)) (i32.const 8)) (local.get $thr)))
          (then (f64.const 0))
          (else (local.get $scale))))
        (local.set $d (f64.promote_f32 (f32.demote_f64 (f64.mul
          (f64.promote_f32 (f32.load (i32.add (local.get $dy) (local.get $o)))) (local.get $kp)))))
        (if (local.get $acc)
          (then (local.set $s (f64.add (local.get $s) (f64.promote_f32 (f32.demote_f64 (f64.mul
            (local.get $d)
            (if (result f64) (f64.eq (local.get $kd) (f64.const 0))
              (then (f64.const 0))
              (else (f64.promote_f32 (f32.demote_f64 (f64.mul
                (f64.promote_f32 (f32.load (i32.add (local.get $br) (local.get $o))))
                (local.get $kd)))))))))))))
        (f32.store (i32.add (local.get $db) (local.get $o))
          (if (result f32) (f64.eq (local.get $kd) (f64.const 0))
            (then (f32.const 0))
            (else (f32.demote_f64 (f64.mul
              (f64.promote_f32 (f32.demote_f64 (f64.mul (local.get $d) (local.get $g))))
              (local.get $kd))))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $lr)))
      (if (local.get $acc)
        (then (f32.store (i32.add (local.get $dgamma) (i32.shl (local.get $j) (i32.const 2)))
          (f32.demote_f64 (local.get $s)))))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br $lj))))
)
