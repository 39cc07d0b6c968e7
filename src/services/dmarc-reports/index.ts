/** The DMARC aggregate report sender for main.ts and the `postseal dmarc` command. */
export { DmarcReportsService, reportSettingsFor, type DmarcReportsDeps } from './service';
export { runReports, type ReportOutcome, type ReportSettings, type RunDeps } from './run';
export { poolSender, type SendMail, type SendResult } from './send';
export { reportSigner, type SignReport } from './sign';
