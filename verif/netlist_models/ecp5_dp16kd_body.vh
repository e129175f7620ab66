// Behaviour of the ECP5 DP16KD block RAM, inserted by verif/netlist_sim.py into the DP16KD of
// Yosys' ecp5/cells_sim.v, which declares the ports and parameters but has no body (a black
// box). Functional, no timing. Covers what Yosys' lattice/brams_map_16kd.v produces: per port
// DATA_WIDTH 1/2/4/9/18 (18: ADx1..0 are the byte write enables), WRITEMODE NORMAL /
// WRITETHROUGH / READBEFOREWRITE, REGMODE NOREG / OUTREG, RESETMODE SYNC / ASYNC (RSTx clears
// the output), CLKxMUX CLKx / INV, INITVAL_00..3F (16 rows of 18 bits in 20 per INITVAL, the
// layout init_slice writes), CSDECODE "0b000" with the CS pins compared to zero. Narrow widths
// pack into each 9-bit byte of an 18-bit row from its low bit (Yosys' "byte 9" layout).
// Anything else stops the simulation.
  reg [17:0] mem [0:1023];
  integer ri;
  initial begin
    for (ri = 0; ri < 64; ri = ri + 1) begin : init_rows
      reg [319:0] iv;
      integer rj;
      case (ri)
        0: iv = INITVAL_00; 1: iv = INITVAL_01; 2: iv = INITVAL_02; 3: iv = INITVAL_03;
        4: iv = INITVAL_04; 5: iv = INITVAL_05; 6: iv = INITVAL_06; 7: iv = INITVAL_07;
        8: iv = INITVAL_08; 9: iv = INITVAL_09; 10: iv = INITVAL_0A; 11: iv = INITVAL_0B;
        12: iv = INITVAL_0C; 13: iv = INITVAL_0D; 14: iv = INITVAL_0E; 15: iv = INITVAL_0F;
        16: iv = INITVAL_10; 17: iv = INITVAL_11; 18: iv = INITVAL_12; 19: iv = INITVAL_13;
        20: iv = INITVAL_14; 21: iv = INITVAL_15; 22: iv = INITVAL_16; 23: iv = INITVAL_17;
        24: iv = INITVAL_18; 25: iv = INITVAL_19; 26: iv = INITVAL_1A; 27: iv = INITVAL_1B;
        28: iv = INITVAL_1C; 29: iv = INITVAL_1D; 30: iv = INITVAL_1E; 31: iv = INITVAL_1F;
        32: iv = INITVAL_20; 33: iv = INITVAL_21; 34: iv = INITVAL_22; 35: iv = INITVAL_23;
        36: iv = INITVAL_24; 37: iv = INITVAL_25; 38: iv = INITVAL_26; 39: iv = INITVAL_27;
        40: iv = INITVAL_28; 41: iv = INITVAL_29; 42: iv = INITVAL_2A; 43: iv = INITVAL_2B;
        44: iv = INITVAL_2C; 45: iv = INITVAL_2D; 46: iv = INITVAL_2E; 47: iv = INITVAL_2F;
        48: iv = INITVAL_30; 49: iv = INITVAL_31; 50: iv = INITVAL_32; 51: iv = INITVAL_33;
        52: iv = INITVAL_34; 53: iv = INITVAL_35; 54: iv = INITVAL_36; 55: iv = INITVAL_37;
        56: iv = INITVAL_38; 57: iv = INITVAL_39; 58: iv = INITVAL_3A; 59: iv = INITVAL_3B;
        60: iv = INITVAL_3C; 61: iv = INITVAL_3D; 62: iv = INITVAL_3E; default: iv = INITVAL_3F;
      endcase
      for (rj = 0; rj < 16; rj = rj + 1)
        mem[ri * 16 + rj] = iv[rj * 20 +: 18];
    end
    if (CSDECODE_A != "0b000" || CSDECODE_B != "0b000" ||
        (REGMODE_A != "NOREG" && REGMODE_A != "OUTREG") ||
        (REGMODE_B != "NOREG" && REGMODE_B != "OUTREG") ||
        (DATA_WIDTH_A != 1 && DATA_WIDTH_A != 2 && DATA_WIDTH_A != 4 && DATA_WIDTH_A != 9 &&
         DATA_WIDTH_A != 18) ||
        (DATA_WIDTH_B != 1 && DATA_WIDTH_B != 2 && DATA_WIDTH_B != 4 && DATA_WIDTH_B != 9 &&
         DATA_WIDTH_B != 18)) begin
      $display("DP16KD %m: configuration not modelled");
      $finish;
    end
  end

  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2,
                     ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2,
                     ADB1, ADB0};
  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7,
                     DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7,
                     DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire csa = ~(CSA2 | CSA1 | CSA0), csb = ~(CSB2 | CSB1 | CSB0);
  wire clka = (CLKAMUX == "INV") ? ~CLKA : CLKA;
  wire clkb = (CLKBMUX == "INV") ? ~CLKB : CLKB;

  // the word of a port at address ad, width w: row ad[13:4], bit offset in the row
  function [4:0] off_of(input [13:0] ad, input integer w);
    off_of = (w == 18) ? 5'd0 : (w == 9) ? (ad[3] ? 5'd9 : 5'd0) :
             (w == 4) ? (ad[3] ? 5'd9 : 5'd0) + (ad[2] ? 5'd4 : 5'd0) :
             (w == 2) ? (ad[3] ? 5'd9 : 5'd0) + {2'd0, ad[2:1], 1'b0} :
             (ad[3] ? 5'd9 : 5'd0) + {2'd0, ad[2:0]};
  endfunction
  function [17:0] mask_of(input integer w);
    mask_of = (w == 18) ? 18'h3ffff : (w == 9) ? 18'h1ff : (w == 4) ? 18'hf :
              (w == 2) ? 18'h3 : 18'h1;
  endfunction

  wire [9:0] rowa = ada[13:4], rowb = adb[13:4];
  wire [4:0] offa = off_of(ada, DATA_WIDTH_A), offb = off_of(adb, DATA_WIDTH_B);
  // the write mask of a port: its word, and at width 18 only the enabled bytes
  wire [17:0] wma = (DATA_WIDTH_A == 18) ? {{9{ADA1}}, {9{ADA0}}}
                                         : (mask_of(DATA_WIDTH_A) << offa);
  wire [17:0] wmb = (DATA_WIDTH_B == 18) ? {{9{ADB1}}, {9{ADB0}}}
                                         : (mask_of(DATA_WIDTH_B) << offb);
  wire [17:0] rowa_new = (mem[rowa] & ~wma) | ((dia << offa) & wma);
  wire [17:0] rowb_new = (mem[rowb] & ~wmb) | ((dib << offb) & wmb);

  always @(posedge clka)
    if (CEA && csa && WEA) mem[rowa] <= rowa_new;
  always @(posedge clkb)
    if (CEB && csb && WEB) mem[rowb] <= rowb_new;

  // read latches (la, lb) and the OUTREG stage (ra, rb); RSTx clears both
  reg [17:0] la = 18'd0, lb = 18'd0, ra = 18'd0, rb = 18'd0;
  wire [17:0] nla = !WEA ? mem[rowa] >> offa :
                    (WRITEMODE_A == "WRITETHROUGH") ? rowa_new >> offa :
                    (WRITEMODE_A == "READBEFOREWRITE") ? mem[rowa] >> offa : la;
  wire [17:0] nlb = !WEB ? mem[rowb] >> offb :
                    (WRITEMODE_B == "WRITETHROUGH") ? rowb_new >> offb :
                    (WRITEMODE_B == "READBEFOREWRITE") ? mem[rowb] >> offb : lb;
  generate
    if (RESETMODE == "ASYNC") begin : async_reset
      always @(posedge clka or posedge RSTA)
        if (RSTA) begin la <= 18'd0; ra <= 18'd0; end
        else begin
          if (CEA && csa) la <= nla;
          if (OCEA) ra <= la;
        end
      always @(posedge clkb or posedge RSTB)
        if (RSTB) begin lb <= 18'd0; rb <= 18'd0; end
        else begin
          if (CEB && csb) lb <= nlb;
          if (OCEB) rb <= lb;
        end
    end else begin : sync_reset
      always @(posedge clka)
        if (RSTA) begin la <= 18'd0; ra <= 18'd0; end
        else begin
          if (CEA && csa) la <= nla;
          if (OCEA) ra <= la;
        end
      always @(posedge clkb)
        if (RSTB) begin lb <= 18'd0; rb <= 18'd0; end
        else begin
          if (CEB && csb) lb <= nlb;
          if (OCEB) rb <= lb;
        end
    end
  endgenerate

  wire [17:0] oa = ((REGMODE_A == "OUTREG") ? ra : la) & mask_of(DATA_WIDTH_A);
  wire [17:0] ob = ((REGMODE_B == "OUTREG") ? rb : lb) & mask_of(DATA_WIDTH_B);
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5,
          DOA4, DOA3, DOA2, DOA1, DOA0} = oa;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5,
          DOB4, DOB3, DOB2, DOB1, DOB0} = ob;
