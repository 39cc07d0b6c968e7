/** The SRS map service for main.ts and the `postseal srs` command. */
export { SrsService, srsEngineFor, type SrsConfig } from './service';
