//! `/dev/sev-guest`: the SNP guest driver's ioctl interface, for kernels
//! without configfs-tsm. `SNP_GET_EXT_REPORT` returns the attestation report
//! and the host's certificate table (VCEK/VLEK, ASK, ARK) in one call.
//!
//! Layouts from the Linux UAPI header `include/uapi/linux/sev-guest.h`:
//!
//! ```c
//! struct snp_report_req { __u8 user_data[64]; __u32 vmpl; __u8 rsvd[28]; };      // 96 bytes
//! struct snp_report_resp { __u8 data[4000]; };   // status u32, size u32, rsvd[24], report[1184], ...
//! struct snp_ext_report_req { struct snp_report_req data; __u64 certs_address; __u32 certs_len; };
//! struct snp_guest_request_ioctl { __u8 msg_version; __u64 req_data; __u64 resp_data;
//!                                  union { __u64 exitinfo2; struct { __u32 fw_error; __u32 vmm_error; }; }; };
//! #define SNP_GET_EXT_REPORT _IOWR('S', 0x2, struct snp_guest_request_ioctl)
//! ```
//! This is the only module of Veil with `unsafe` code: one block, with the
//! argument for its soundness. It has no test on this machine (no
//! SNP guest); the layouts are checked by unit tests.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{AttestError, Attester};

/// The device.
pub const DEFAULT_DEVICE: &str = "/dev/sev-guest";

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ExtReportReq {
    data: ReportReq,
    certs_address: u64,
    certs_len: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct GuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

#[repr(C)]
struct ReportResp {
    data: [u8; 4000],
}

/// `_IOWR('S', 0x2, struct snp_guest_request_ioctl)`: direction read|write
/// (3) in bits 31:30, size in 29:16, type in 15:8, number in 7:0.
const SNP_GET_EXT_REPORT: u64 = (3 << 30)
    | ((std::mem::size_of::<GuestRequestIoctl>() as u64) << 16)
    | ((b'S' as u64) << 8)
    | 0x2;

/// `SNP_GUEST_VMM_ERR_INVALID_LEN`: the certificate buffer is too small;
/// `certs_len` then holds the size needed.
const VMM_ERR_INVALID_LEN: u32 = 1;

const PAGE: usize = 4096;

/// The report and certificate table from one ioctl.
#[derive(Debug, Clone)]
pub struct ExtReport {
    pub report: Vec<u8>,
    pub certs: Vec<u8>,
}

/// Issues `SNP_GET_EXT_REPORT` on `device`.
pub fn get_ext_report(
    device: &Path,
    user_data: &[u8; 64],
    vmpl: u32,
) -> Result<ExtReport, AttestError> {
    let io = |source: std::io::Error| AttestError::Io {
        path: device.display().to_string(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(io)?;
    let mut certs_len = 4 * PAGE;
    for _ in 0..2 {
        let mut certs = vec![0u8; certs_len];
        let mut req = ExtReportReq {
            data: ReportReq {
                user_data: *user_data,
                vmpl,
                rsvd: [0; 28],
            },
            certs_address: certs.as_mut_ptr() as u64,
            certs_len: u32::try_from(certs_len)
                .map_err(|_| AttestError::Evidence("certificate buffer too large".into()))?,
        };
        let mut resp = ReportResp { data: [0; 4000] };
        let mut ioctl = GuestRequestIoctl {
            msg_version: 1,
            req_data: &mut req as *mut ExtReportReq as u64,
            resp_data: &mut resp as *mut ReportResp as u64,
            exitinfo2: 0,
        };
        // SAFETY: `file` is an open descriptor for the whole call. The
        // request number encodes the exact size of `GuestRequestIoctl`, a
        // `#[repr(C)]` mirror of the kernel's `snp_guest_request_ioctl`.
        // `req_data` and `resp_data` point to live, exclusively borrowed
        // `#[repr(C)]` structures of the kernel's sizes (`snp_ext_report_req`,
        // 4000-byte `snp_report_resp`), and `certs_address`/`certs_len`
        // describe `certs`, a live buffer of exactly that many bytes. The
        // kernel writes only within those bounds; all of them outlive the
        // call, and none is read before it returns.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                SNP_GET_EXT_REPORT as _,
                &mut ioctl as *mut GuestRequestIoctl,
            )
        };
        if rc == 0 {
            let status = u32::from_le_bytes(
                resp.data[0..4]
                    .try_into()
                    .map_err(|_| AttestError::Evidence("response".into()))?,
            );
            let size = u32::from_le_bytes(
                resp.data[4..8]
                    .try_into()
                    .map_err(|_| AttestError::Evidence("response".into()))?,
            ) as usize;
            if status != 0 {
                return Err(AttestError::Evidence(format!(
                    "firmware status {status:#x}"
                )));
            }
            let report = resp
                .data
                .get(0x20..0x20 + size)
                .ok_or_else(|| AttestError::Evidence(format!("report size {size} out of range")))?
                .to_vec();
            return Ok(ExtReport { report, certs });
        }
        let err = std::io::Error::last_os_error();
        let vmm_error = (ioctl.exitinfo2 >> 32) as u32;
        if vmm_error == VMM_ERR_INVALID_LEN && req.certs_len as usize > certs_len {
            certs_len = (req.certs_len as usize).div_ceil(PAGE) * PAGE;
            continue;
        }
        return Err(AttestError::Evidence(format!(
            "SNP_GET_EXT_REPORT failed: {err} (firmware error {:#x}, VMM error {vmm_error:#x})",
            ioctl.exitinfo2 as u32
        )));
    }
    Err(AttestError::Evidence(
        "the host's certificate table keeps growing".into(),
    ))
}

/// An attester over `/dev/sev-guest`.
#[derive(Debug, Clone)]
pub struct SevGuestAttester {
    device: PathBuf,
}

impl SevGuestAttester {
    /// Uses `device` if it exists.
    pub fn detect(device: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let device = device.into();
        if !device.exists() {
            return Err(AttestError::NoTee(format!(
                "{} does not exist",
                device.display()
            )));
        }
        Ok(SevGuestAttester { device })
    }
}

impl Attester for SevGuestAttester {
    fn tee(&self) -> &'static str {
        "snp"
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AttestError> {
        let ext = get_ext_report(&self.device, report_data, 0)?;
        crate::tsm::snp_evidence_json(&ext.report, Some(&ext.certs))
    }

    fn launch_init_data(&self) -> Result<Vec<u8>, AttestError> {
        let ext = get_ext_report(&self.device, &[0; 64], 0)?;
        veil_evidence::snp::AttestationReport::parse(&ext.report)
            .map(|r| r.host_data.to_vec())
            .map_err(|e| AttestError::Evidence(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel_uapi() {
        assert_eq!(std::mem::size_of::<ReportReq>(), 96);
        assert_eq!(std::mem::size_of::<ExtReportReq>(), 112);
        assert_eq!(std::mem::offset_of!(ExtReportReq, certs_address), 96);
        assert_eq!(std::mem::offset_of!(ExtReportReq, certs_len), 104);
        assert_eq!(std::mem::size_of::<GuestRequestIoctl>(), 32);
        assert_eq!(std::mem::offset_of!(GuestRequestIoctl, req_data), 8);
        assert_eq!(std::mem::offset_of!(GuestRequestIoctl, exitinfo2), 24);
        assert_eq!(std::mem::size_of::<ReportResp>(), 4000);
        assert_eq!(SNP_GET_EXT_REPORT, 0xC020_5302);
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let err = SevGuestAttester::detect("/nonexistent/sev-guest").unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = get_ext_report(Path::new("/nonexistent/sev-guest"), &[0; 64], 0).unwrap_err();
        assert!(matches!(err, AttestError::Io { .. }), "{err}");
    }
}

/// `/dev/tdx_guest`, for the TD report: `TDX_CMD_GET_REPORT0`
/// (`_IOWR('T', 1, struct tdx_report_req { __u8 reportdata[64]; __u8 tdreport[1024]; })`).
/// Upstream kernels produce TD *quotes* only through configfs-tsm; this is
/// used to read the launch measurements (MRCONFIGID for init-data).
pub const DEFAULT_TDX_GUEST: &str = "/dev/tdx_guest";

#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; 1024],
}

const TDX_CMD_GET_REPORT0: u64 =
    (3 << 30) | ((std::mem::size_of::<TdxReportReq>() as u64) << 16) | ((b'T' as u64) << 8) | 0x1;

/// Offset of MRCONFIGID in TDREPORT_STRUCT: REPORTMACSTRUCT (256) +
/// TEE_TCB_INFO (239) + reserved (17) = TDINFO at 512; ATTRIBUTES (8),
/// XFAM (8), MRTD (48), then MRCONFIGID (48).
const TDREPORT_MRCONFIGID: std::ops::Range<usize> = 576..624;

/// The 1024-byte TD report for `report_data`.
pub fn tdx_get_report0(device: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|source| AttestError::Io {
            path: device.display().to_string(),
            source,
        })?;
    let mut req = TdxReportReq {
        reportdata: *report_data,
        tdreport: [0; 1024],
    };
    // SAFETY: `file` is an open descriptor for the whole call; the request
    // number encodes the exact size of `TdxReportReq`, a `#[repr(C)]` mirror
    // of the kernel's `tdx_report_req` (64 + 1024 bytes), and `req` is a
    // live, exclusively borrowed value of that type that the kernel reads
    // and writes only within its bounds before the call returns.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            TDX_CMD_GET_REPORT0 as _,
            &mut req as *mut TdxReportReq,
        )
    };
    if rc != 0 {
        return Err(AttestError::Evidence(format!(
            "TDX_CMD_GET_REPORT0 failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(req.tdreport.to_vec())
}

/// MRCONFIGID from a TD report.
pub fn tdreport_mr_config_id(tdreport: &[u8]) -> Result<Vec<u8>, AttestError> {
    tdreport
        .get(TDREPORT_MRCONFIGID)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| AttestError::Evidence("TD report shorter than 1024 bytes".into()))
}

#[cfg(test)]
mod tdx_tests {
    use super::*;

    #[test]
    fn tdx_layouts() {
        assert_eq!(std::mem::size_of::<TdxReportReq>(), 1088);
        assert_eq!(TDX_CMD_GET_REPORT0, 0xC440_5401);
        let mut report = vec![0u8; 1024];
        report[576..624].fill(7);
        assert_eq!(tdreport_mr_config_id(&report).unwrap(), vec![7; 48]);
        assert!(tdreport_mr_config_id(&report[..600]).is_err());
        assert!(tdx_get_report0(Path::new("/nonexistent/tdx_guest"), &[0; 64]).is_err());
    }
}
