/** The DMARC aggregate and failure report senders for main.ts and the `postseal dmarc` command. */
export { DmarcReportsService, reportSettingsFor, type DmarcReportsDeps } from './service';
export { runReports, type ReportOutcome, type ReportSettings, type RunDeps } from './run';
export { poolSender, type SendMail, type SendResult } from '../../notify/send';
export { reportSigner, type SignReport } from '../../notify/sign';
export { DmarcFailureReportsService, type DmarcFailureReportsDeps } from './failure-service';
export { FailureReporter, type FailureOutcome, type FailureSettings, type FailureStatus } from './failures';
