// Simulation models for the ECP5 cells that Yosys' ecp5/cells_sim.v leaves as black boxes
// (cells_bb.v) but the board top's netlists use. Functional only, no timing.
// See docs/netlist.md (what the netlist bench covers).

// The PLL is modelled as a clock: CLKOP is the clock the bench drives on the board's clock
// pin (the bench runs that pin at the PLL's output frequency); LOCK is high from the start.
module EHXPLLL(input CLKI, CLKFB, PHASESEL1, PHASESEL0, PHASEDIR, PHASESTEP, PHASELOADREG,
               STDBY, PLLWAKESYNC, RST, ENCLKOP, ENCLKOS, ENCLKOS2, ENCLKOS3,
               output CLKOP, CLKOS, CLKOS2, CLKOS3, LOCK, INTLOCK, REFCLK, CLKINTFB);
  parameter CLKI_DIV = 1;
  parameter CLKFB_DIV = 1;
  parameter CLKOP_DIV = 8;
  parameter CLKOS_DIV = 8;
  parameter CLKOS2_DIV = 8;
  parameter CLKOS3_DIV = 8;
  parameter CLKOP_ENABLE = "ENABLED";
  parameter CLKOS_ENABLE = "DISABLED";
  parameter CLKOS2_ENABLE = "DISABLED";
  parameter CLKOS3_ENABLE = "DISABLED";
  parameter CLKOP_CPHASE = 0;
  parameter CLKOS_CPHASE = 0;
  parameter CLKOS2_CPHASE = 0;
  parameter CLKOS3_CPHASE = 0;
  parameter CLKOP_FPHASE = 0;
  parameter CLKOS_FPHASE = 0;
  parameter CLKOS2_FPHASE = 0;
  parameter CLKOS3_FPHASE = 0;
  parameter FEEDBK_PATH = "CLKOP";
  parameter CLKOP_TRIM_POL = "RISING";
  parameter CLKOP_TRIM_DELAY = 0;
  parameter CLKOS_TRIM_POL = "RISING";
  parameter CLKOS_TRIM_DELAY = 0;
  parameter OUTDIVIDER_MUXA = "DIVA";
  parameter OUTDIVIDER_MUXB = "DIVB";
  parameter OUTDIVIDER_MUXC = "DIVC";
  parameter OUTDIVIDER_MUXD = "DIVD";
  parameter PLL_LOCK_MODE = 0;
  parameter PLL_LOCK_DELAY = 200;
  parameter STDBY_ENABLE = "DISABLED";
  parameter REFIN_RESET = "DISABLED";
  parameter SYNC_ENABLE = "DISABLED";
  parameter INT_LOCK_STICKY = "ENABLED";
  parameter DPHASE_SOURCE = "DISABLED";
  parameter PLLRST_ENA = "DISABLED";
  parameter INTFB_WAKE = "DISABLED";
  assign CLKOP = CLKI;
  assign CLKOS = CLKI;
  assign CLKOS2 = CLKI;
  assign CLKOS3 = CLKI;
  assign LOCK = 1'b1;
  assign INTLOCK = 1'b1;
  assign REFCLK = CLKI;
  assign CLKINTFB = CLKI;
endmodule

// Global clock buffer (nextpnr inserts it on the PLL output).
module DCCA(input CLKI, CE, output CLKO);
  assign CLKO = CLKI;
endmodule

// 18x18 multiplier in the configuration synth_ecp5 maps $mul to (lattice/dsp_map_18x18.v):
// no input, pipeline or output register, C unused, A and B signed by SIGNEDA / SIGNEDB.
// Any registered configuration stops the simulation (this model does not cover it).
module MULT18X18D(
  input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
  input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
  input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0,
  input RST3, RST2, RST1, RST0,
  input SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8,
  input SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
  input SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8,
  input SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
  output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
  output SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0,
  output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8,
  output SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0,
  output ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8,
  output ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0,
  output ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8,
  output ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0,
  output ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8,
  output ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0,
  output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
  output P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2,
  output P1, P0, SIGNEDP);
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0";
  parameter REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTB_CE = "CE0";
  parameter REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE";
  parameter REG_INPUTC_CE = "CE0";
  parameter REG_INPUTC_RST = "RST0";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_PIPELINE_CE = "CE0";
  parameter REG_PIPELINE_RST = "RST0";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_OUTPUT_CE = "CE0";
  parameter REG_OUTPUT_RST = "RST0";
  parameter CLK0_DIV = "ENABLED";
  parameter CLK1_DIV = "ENABLED";
  parameter CLK2_DIV = "ENABLED";
  parameter CLK3_DIV = "ENABLED";
  parameter HIGHSPEED_CLK = "NONE";
  parameter GSR = "ENABLED";
  parameter CAS_MATCH_REG = "FALSE";
  parameter SOURCEB_MODE = "B_SHIFT";
  parameter MULT_BYPASS = "DISABLED";
  parameter RESETMODE = "SYNC";

  wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1,
                   A0};
  wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1,
                   B0};
  wire signed [36:0] sa = {SIGNEDA & a[17], SIGNEDA & a[17], a};
  wire signed [36:0] sb = {SIGNEDB & b[17], SIGNEDB & b[17], b};
  wire signed [36:0] p = sa * sb;
  assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
          P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1,
          P0} = p[35:0];
  assign SIGNEDP = SIGNEDA | SIGNEDB;
  assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5,
          ROA4, ROA3, ROA2, ROA1, ROA0} = a;
  assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5,
          ROB4, ROB3, ROB2, ROB1, ROB0} = b;
  assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7,
          SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a;
  assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7,
          SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b;
  assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5,
          ROC4, ROC3, ROC2, ROC1, ROC0} = 18'd0;
  initial begin
    if (REG_INPUTA_CLK != "NONE" || REG_INPUTB_CLK != "NONE" || REG_INPUTC_CLK != "NONE" ||
        REG_PIPELINE_CLK != "NONE" || REG_OUTPUT_CLK != "NONE" || MULT_BYPASS != "DISABLED") begin
      $display("MULT18X18D %m: registered or bypass mode is not modelled");
      $finish;
    end
  end
endmodule

// Write-port half of a distributed-RAM slice after packing (nextpnr TRELLIS_RAMW): it only
// routes the write data and address to the TRELLIS_COMB cells in DPRAM mode (the pin
// correspondence is nextpnr's, ecp5/arch.cc getCellDelay).
module TRELLIS_RAMW(input A0, B0, C0, D0, A1, B1, C1, D1,
                    output WDO0, WDO1, WDO2, WDO3, WADO0, WADO1, WADO2, WADO3);
  assign WADO3 = A0;
  assign WADO1 = B0;
  assign WADO2 = C0;
  assign WADO0 = D0;
  assign WDO1 = A1;
  assign WDO3 = B1;
  assign WDO0 = C1;
  assign WDO2 = D1;
endmodule

// I/O buffer without the pad's analog side: an input passes the pin in, an output drives it
// (the board top never tri-states a pin). Yosys' model assigns 'z' to an input port, an
// ASSIGNIN error on the Verilator side; this one replaces it on both simulators.
module TRELLIS_IO(inout B, input I, T, output O);
  parameter DIR = "INPUT";
  generate
    if (DIR == "INPUT") begin
      assign O = B;
    end else if (DIR == "OUTPUT") begin
      assign B = I;
      assign O = 1'b0;
    end else begin
      initial begin
        $display("TRELLIS_IO %m: DIR %s is not modelled", DIR);
        $finish;
      end
    end
  endgenerate
endmodule
